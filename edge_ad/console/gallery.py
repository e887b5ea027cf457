"""The NG gallery: the newest NG parts with their heatmaps, and labelling a case through ``edge-ad cases label``."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from edge_ad.config import EdgeAdConfig
from edge_ad.console.evidence import Shot, gallery
from edge_ad.console.feed import Feed
from edge_ad.errors import EdgeAdError

__all__ = ["MAX_IMAGE_BYTES", "MAX_LABEL", "cases_state", "label", "quick_labels", "shots"]

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 32 * 1024 * 1024  # an evidence JPEG is far smaller; a bigger file is not evidence
MAX_LABEL = 64
SHOWN = 48
QUICK = 6


def shots(feed: Feed, folder: Path) -> list[Shot]:
    """The newest NG parts: the feed's NG verdicts and the evidence folder's older files, newest first."""
    return gallery(folder, feed.ng_verdicts(), limit=SHOWN)


def quick_labels(shown: list[Shot]) -> list[str]:
    """Labels offered as one-click buttons: the hints of the parts shown, most frequent first."""
    counts: dict[str, int] = {}
    for shot in shown:
        if shot.hint:
            counts[shot.hint["label"]] = counts.get(shot.hint["label"], 0) + 1
    return sorted(counts, key=lambda name: (-counts[name], name))[:QUICK]


def cases_state(config: EdgeAdConfig) -> dict[str, Any]:
    """Whether labelling is possible here: ``{"enabled": bool, "note": str | None}``."""
    if not config.cases.enabled:
        return {
            "enabled": False,
            "note": "The case store is not enabled on this station (cases.enabled: false): parts cannot be "
            "labelled here. See docs/cases.md.",
        }
    if importlib.util.find_spec("qdrant_client") is None:
        return {
            "enabled": False,
            "note": "The case store is enabled, but this console cannot reach it: the qdrant-client package "
            "is missing (pip install 'edge_ad[cases]').",
        }
    return {"enabled": True, "note": None}


def _bad_label(text: str) -> str | None:
    if len(text) > MAX_LABEL:
        return f"a label has at most {MAX_LABEL} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return "a label has no control characters"
    return None


def label(config: EdgeAdConfig, case: str, text: str, user: str) -> str:
    """Label case ``case`` with ``text`` as ``edge-ad cases label`` does; returns the message for the page."""
    state = cases_state(config)
    if not state["enabled"]:
        return f"NOT labelled: {state['note']}"
    try:
        ident = int(case)
    except ValueError:
        return f"NOT labelled: {case[:40]!r} is not a case id"
    text = text.strip()
    if (why := _bad_label(text)) is not None:
        return f"NOT labelled: {why}"
    from edge_ad.cases.labelling import label_case

    try:
        message = label_case(config, ident, text)
    except EdgeAdError as exc:
        return f"NOT labelled: {exc}"
    logger.warning("console: %s labelled case %d %r", user, ident, text)
    return message
