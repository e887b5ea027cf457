"""The case store: NG frames' embeddings and what is known of them, in Qdrant.

Embedded mode (the default) keeps a Qdrant local store on disk under ``<cases dir>/qdrant``.
Qdrant's local mode admits one process at a time, and the running daemon is that process; so
another process (``edge-ad cases ...``) reads a consistent copy of the store while the daemon
holds it, and queues labels in ``<cases dir>/pending-labels/`` for the daemon to apply within a
second (:meth:`CaseStore.apply_pending_labels`). A server (``cases.url``) has none of this: every
process talks to it directly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.bundle.manifest import Manifest
from edge_ad.config import EdgeAdConfig
from edge_ad.config.cases import CasesConfig
from edge_ad.errors import ConfigError, EdgeAdError, first_line

__all__ = [
    "Case",
    "CaseStore",
    "CaseStoreBusy",
    "CaseStoreError",
    "Match",
    "case_id",
    "cases_dir",
    "embedding_space",
    "open_store",
    "queue_label",
    "require_qdrant",
]

logger = logging.getLogger(__name__)

QDRANT_DIR = "qdrant"
PENDING_LABELS = "pending-labels"


class CaseStoreError(EdgeAdError):
    """The case store cannot be opened or used."""


class CaseStoreBusy(CaseStoreError):
    """The embedded store is held by another process (the running daemon)."""


@dataclass(frozen=True)
class Match:
    """A stored case and its similarity (cosine, 1 = identical) to a query."""

    id: int
    similarity: float
    payload: dict[str, Any]

    @property
    def label(self) -> str | None:
        """The engineer's label, if any."""
        return self.payload.get("label")


@dataclass(frozen=True)
class Case:
    """One frame to remember."""

    id: int
    embedding: np.ndarray
    payload: dict[str, Any]


def case_id(ts: float, seq: int, station: str) -> int:
    """A case id that sorts by time: milliseconds since the epoch × 1000 + a per-station/sequence tail."""
    return int(ts * 1000) * 1000 + (zlib.crc32(station.encode()) + seq) % 1000


def embedding_space(manifest: Manifest) -> str:
    """Which embeddings are comparable: same model type, backbone, layers and input size (any version)."""
    m = manifest.model
    return f"{m.type}|{m.backbone}|{'+'.join(m.layers)}|{manifest.input.height}x{manifest.input.width}"


def iso(ts: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def cases_dir(config: EdgeAdConfig) -> Path:
    """The embedded store's directory of a station: ``cases.path``, default ``<service.state_dir>/cases``."""
    return config.cases.path or config.service.state_dir / "cases"


def _qdrant():
    try:
        import qdrant_client
        from qdrant_client import models
    except ImportError:
        raise CaseStoreError(
            "cases: the qdrant-client package is not installed; "
            "pip install 'edge_ad[cases]' or set cases.enabled: false"
        ) from None
    return qdrant_client, models


def require_qdrant() -> None:
    """Fail early, with the install command, when qdrant-client is missing.

    Raises:
        ConfigError: qdrant-client is not installed.
    """
    try:
        _qdrant()
    except CaseStoreError as exc:
        raise ConfigError(str(exc)) from None


class CaseStore:
    """Add, search, label and expire cases.

    One collection per embedding space (``<cases.collection>_<space>``): embeddings of one
    backbone/layers/input size are comparable across bundle versions and stations, others are not,
    and a search never needs a filter (Qdrant's local mode filters point by point in Python).

    Args:
        client: A connected ``QdrantClient``.
        base: ``cases.collection``, the prefix of every collection name.
        folder: The embedded store's cases directory (pending labels live there), None for a server.
        snapshot: The directory of a read-only copy of a store held by another process (removed on
            :meth:`close`); writes raise.
    """

    def __init__(self, client: Any, base: str, folder: Path | None = None, snapshot: Path | None = None) -> None:
        self.client = client
        self.base = base
        self.folder = folder
        self.snapshot = snapshot
        self._models = _qdrant()[1]
        self._known: set[str] = set()

    def close(self) -> None:
        """Release the store (the embedded store's lock; a snapshot is removed)."""
        self.client.close()
        if self.snapshot is not None:
            shutil.rmtree(self.snapshot, ignore_errors=True)

    @property
    def read_only(self) -> bool:
        """A copy of a store another process holds: search only."""
        return self.snapshot is not None

    def collection(self, space: str) -> str:
        """The collection of one embedding space."""
        return f"{self.base}_{re.sub(r'[^A-Za-z0-9_-]+', '-', space)}"

    def collections(self) -> list[str]:
        """Every collection of this store's prefix."""
        return sorted(c.name for c in self.client.get_collections().collections if c.name.startswith(self.base + "_"))

    def _writable(self) -> None:
        if self.read_only:
            raise CaseStoreBusy("cases: the store is held by the running daemon; this copy is read-only")

    def add(self, case: Case, space: str) -> None:
        """Store one case in its space's collection (created with the embedding's width on first use)."""
        self._writable()
        m, name = self._models, self.collection(space)
        vector = np.asarray(case.embedding, dtype=np.float32).reshape(-1)
        if name not in self._known:
            if not self.client.collection_exists(name):
                self.client.create_collection(
                    name, vectors_config=m.VectorParams(size=vector.size, distance=m.Distance.COSINE)
                )
            self._known.add(name)
        point = m.PointStruct(id=case.id, vector=vector.tolist(), payload={**case.payload, "space": space})
        self.client.upsert(name, points=[point])

    def similar(self, embedding: np.ndarray, space: str, k: int = 5) -> list[Match]:
        """The ``k`` stored cases nearest to ``embedding`` in its space (most similar first)."""
        name = self.collection(space)
        if name not in self._known and not self.client.collection_exists(name):
            return []
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        points = self.client.query_points(name, query=vector.tolist(), limit=k, with_payload=True).points
        return [Match(int(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def labelled(self, space: str) -> tuple[list[int], list[str], np.ndarray]:
        """Every labelled case of a space: ids, labels and unit-length embeddings ``[n, D]``."""
        name = self.collection(space)
        if not self.client.collection_exists(name):
            return [], [], np.zeros((0, 0), np.float32)
        m = self._models
        has_label = m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key="label"))])
        points = self._scan(name, has_label, payload=True, vectors=True)
        if not points:  # cases, none labelled yet
            return [], [], np.zeros((0, 0), np.float32)
        vectors = np.array([p.vector for p in points], dtype=np.float32).reshape(len(points), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return [int(p.id) for p in points], [p.payload["label"] for p in points], vectors / np.maximum(norms, 1e-12)

    def _find(self, ident: int) -> tuple[str, Match] | None:
        for name in self.collections():
            found = self.client.retrieve(name, ids=[ident], with_payload=True)
            if found:
                return name, Match(int(found[0].id), 1.0, dict(found[0].payload or {}))
        return None

    def get(self, ident: int) -> Match | None:
        """One case by id, or None."""
        found = self._find(ident)
        return found[1] if found else None

    def vector(self, ident: int) -> tuple[Match, np.ndarray] | None:
        """One case by id and its stored embedding (unit length: cosine collections normalise), or None."""
        for name in self.collections():
            found = self.client.retrieve(name, ids=[ident], with_payload=True, with_vectors=True)
            if found:
                point = found[0]
                return Match(int(point.id), 1.0, dict(point.payload or {})), np.asarray(point.vector, np.float32)
        return None

    def recent(self, n: int = 20) -> list[Match]:
        """The ``n`` newest cases of every space (newest first)."""
        points = [p for name in self.collections() for p in self._scan(name, None, payload=True)]
        return [Match(int(p.id), 1.0, dict(p.payload or {})) for p in sorted(points, key=lambda p: -int(p.id))[:n]]

    def label(self, ident: int, label: str) -> None:
        """Tag a case (``label`` "" removes the tag).

        Raises:
            CaseStoreError: No case has that id.
        """
        self._writable()
        found = self._find(ident)
        if found is None:
            raise CaseStoreError(f"cases: no case with id {ident}; 'edge-ad cases list' shows the ids")
        payload = {"label": label or None, "labelled": iso(time.time())}
        self.client.set_payload(found[0], payload=payload, points=[ident])

    def count(self) -> int:
        """Cases stored (all spaces)."""
        return sum(int(self.client.count(name, exact=True).count) for name in self.collections())

    def expire(self, station: str, max_cases: int, max_age_days: float | None, now: float | None = None) -> int:
        """Remove this station's unlabelled cases beyond the retention limits (oldest first); returns how many.

        Labelled cases are the station's knowledge of its defects and are kept. ``max_cases`` counts
        this station's unlabelled cases over every space; ids sort by time.
        """
        self._writable()
        now = time.time() if now is None else now
        # the embedded store is this station's own: no filter (Qdrant's local mode filters in Python)
        own = None if self.folder is not None else self._match("station", station)
        cutoff = case_id(now - max_age_days * 86400, 0, "") if max_age_days is not None else 0
        ids = {
            name: sorted(int(p.id) for p in self._scan(name, own, payload=True) if not (p.payload or {}).get("label"))
            for name in self.collections()
        }
        excess = sum(len(v) for v in ids.values()) - max_cases
        oldest = sorted(i for v in ids.values() for i in v)[: max(excess, 0)]
        last = max([cutoff - 1, *oldest])  # every unlabelled case up to this id goes
        removed = 0
        for name, members in ids.items():
            doomed = [i for i in members if i <= last]
            if doomed:
                self.client.delete(name, points_selector=self._models.PointIdsList(points=doomed))
                removed += len(doomed)
        return removed

    def _scan(self, name: str, flt: Any, payload: bool = False, vectors: bool = False) -> list[Any]:
        points, offset = [], None
        while True:
            batch, offset = self.client.scroll(
                name, scroll_filter=flt, limit=1000, offset=offset, with_payload=payload, with_vectors=vectors
            )
            points.extend(batch)
            if offset is None:
                return points

    def _match(self, key: str, value: str) -> Any:
        m = self._models
        return m.Filter(must=[m.FieldCondition(key=key, match=m.MatchValue(value=value))])

    def apply_pending_labels(self) -> int:
        """Apply labels queued by other processes (embedded store only); returns how many were applied."""
        if self.folder is None or self.read_only:
            return 0
        applied = 0
        for path in sorted((self.folder / PENDING_LABELS).glob("*.json")):
            try:
                item = json.loads(path.read_text())
                self.label(int(item["id"]), str(item["label"]))
                applied += 1
            except CaseStoreError as exc:
                logger.warning("cases: queued label %s dropped: %s", path.name, exc)
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("cases: queued label %s unreadable (%s); dropped", path.name, exc)
            path.unlink(missing_ok=True)
        return applied


def queue_label(folder: Path, ident: int, label: str) -> Path:
    """Queue a label for the daemon that holds the embedded store (atomic: written, then renamed)."""
    pending = folder / PENDING_LABELS
    pending.mkdir(parents=True, exist_ok=True)
    tmp = pending / f".{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps({"id": ident, "label": label, "ts": time.time()}))
    final = pending / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    os.replace(tmp, final)
    return final


def _read_key(config: CasesConfig) -> str | None:
    if config.api_key_env is None:
        return None
    value = os.environ.get(config.api_key_env)
    if value is None:
        raise CaseStoreError(f"cases.api_key_env: environment variable {config.api_key_env} is not set")
    return value


def _copy_local(source: Path, target: Path) -> None:
    """A consistent copy of a Qdrant local store another process writes (sqlite online backup)."""
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if path.is_dir() or rel.name == ".lock":
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".sqlite":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as src, sqlite3.connect(target / rel) as dst:
                src.backup(dst)
        else:
            shutil.copy2(path, target / rel)


def open_store(config: CasesConfig, folder: Path, wait_s: float = 0.0, snapshot_if_busy: bool = False) -> CaseStore:
    """Connect to the configured store.

    Args:
        config: The ``cases`` section.
        folder: The embedded store's directory (``cases.path`` or ``<state_dir>/cases``); unused with a URL.
        wait_s: How long to retry while another process holds the embedded store.
        snapshot_if_busy: Instead of failing, open a read-only copy of a store held by another process.

    Raises:
        CaseStoreBusy: The embedded store is held by another process (and no snapshot was asked for).
        CaseStoreError: qdrant-client is missing, the server is unreachable, the key is unset.
    """
    qdrant_client, _ = _qdrant()
    if config.url is not None:
        try:
            key = _read_key(config)
            client = qdrant_client.QdrantClient(
                url=config.url, api_key=key, timeout=int(config.timeout_s), check_compatibility=False
            )
            client.get_collections()  # fail now, with the URL in the message, not at the first NG part
        except CaseStoreError:
            raise
        except Exception as exc:
            raise CaseStoreError(f"cases.url: cannot reach Qdrant at {config.url} ({first_line(exc)})") from None
        return CaseStore(client, config.collection)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaseStoreError(f"cases.path: cannot create {folder} ({exc.strerror}); set a writable directory") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = qdrant_client.QdrantClient(path=str(folder / QDRANT_DIR))
            return CaseStore(client, config.collection, folder)
        except RuntimeError as exc:  # qdrant-client: "... already accessed by another instance ..."
            if "already accessed" not in str(exc):
                raise CaseStoreError(f"cases.path: cannot open the store in {folder} ({first_line(exc)})") from None
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if not snapshot_if_busy:
                raise CaseStoreBusy(f"cases.path: {folder} is in use by another process (the running daemon)") from None
        copy = Path(tempfile.mkdtemp(prefix="edge-ad-cases-"))
        _copy_local(folder / QDRANT_DIR, copy / QDRANT_DIR)
        return CaseStore(qdrant_client.QdrantClient(path=str(copy / QDRANT_DIR)), config.collection, folder, copy)
