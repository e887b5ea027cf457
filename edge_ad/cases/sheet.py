"""Contact sheet: the query image beside its nearest stored cases, captioned (OpenCV only)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_ad.cases.store import Match

__all__ = ["contact_sheet"]

TILE = 224
CAPTION = 40


def _tile(image: np.ndarray | None, lines: list[str]) -> np.ndarray:
    tile = np.full((TILE + CAPTION, TILE, 3), 48, np.uint8)
    if image is None:
        cv2.putText(tile, "no snapshot", (50, TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1)
    else:
        h, w = image.shape[:2]
        scale = TILE / max(h, w)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        y, x = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
        tile[y : y + small.shape[0], x : x + small.shape[1]] = small
    for i, line in enumerate(lines[:2]):
        cv2.putText(tile, line[:32], (4, TILE + 16 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return tile


def contact_sheet(query: np.ndarray, matches: list[Match], out: Path) -> Path:
    """Write a one-row PNG: the query, then each match with rank, similarity, label and verdict."""
    tiles = [_tile(query, ["query", ""])]
    for rank, m in enumerate(matches, 1):
        snapshot = m.payload.get("snapshot")
        image = cv2.imread(str(snapshot), cv2.IMREAD_COLOR) if snapshot else None
        label = m.label or "unlabelled"
        tiles.append(_tile(image, [f"#{rank} sim {m.similarity:.3f} {label}", f"{m.payload.get('time', '')}"]))
    sheet = np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0))) for t in tiles])
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise OSError(f"cannot write {out}")
    return out
