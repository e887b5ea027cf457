"""Label a case: the one function ``edge-ad cases label`` and the console's gallery both call."""

from __future__ import annotations

from edge_ad.cases.store import CaseStoreError, cases_dir, open_store, queue_label
from edge_ad.config import EdgeAdConfig

__all__ = ["label_case"]


def label_case(config: EdgeAdConfig, ident: int, label: str) -> str:
    """Tag case ``ident`` with ``label`` ("" removes the tag); returns a one-line message for the person.

    While the running daemon holds the embedded store the label is queued and the daemon applies it
    within seconds; otherwise it is written at once.

    Raises:
        CaseStoreError: No case has that id, or the store cannot be opened (qdrant-client missing, server away).
    """
    store = open_store(config.cases, cases_dir(config), snapshot_if_busy=True)
    try:
        if store.get(ident) is None:
            raise CaseStoreError(f"cases: no case with id {ident}; 'edge-ad cases list' shows the ids")
        if store.read_only:  # the daemon holds the embedded store: it applies queued labels every second
            queue_label(cases_dir(config), ident, label)
            return f"case {ident}: label '{label}' queued; the running daemon applies it within seconds"
        store.apply_pending_labels()
        store.label(ident, label)
    finally:
        store.close()
    return f"case {ident}: labelled '{label}'" if label else f"case {ident}: label removed"
