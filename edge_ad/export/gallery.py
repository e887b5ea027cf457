"""Image galleries of the export report: false rejects, escapes and the closest calls at the threshold."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_ad.inference.preprocess import crop_roi
from edge_ad.service.evidence import heatmap_overlay
from edge_ad.types import is_ng

__all__ = ["LIMIT", "Gallery", "Tile", "closest_calls", "errors", "galleries", "gallery_title"]

LIMIT = 6  # images shown per gallery
Kind = Literal["false rejects", "escapes"]


@dataclass(frozen=True)
class Tile:
    """One image of a gallery: a PNG under the report folder (None: the image is not readable here)."""

    file: str | None
    caption: str


@dataclass(frozen=True)
class Gallery:
    """A titled row of images."""

    title: str
    tiles: list[Tile]


def errors(rows: list[dict], threshold: float, kind: Kind) -> list[dict]:
    """False rejects (good judged NG, highest score first) or escapes (defects judged OK, lowest first)."""
    if kind == "false rejects":
        return sorted((r for r in rows if not r["label"] and is_ng(r["score"], threshold)), key=lambda r: -r["score"])
    return sorted((r for r in rows if r["label"] and not is_ng(r["score"], threshold)), key=lambda r: r["score"])


def closest_calls(rows: list[dict], threshold: float) -> list[dict]:
    """The highest-scoring good image that passes and the lowest-scoring defect that is rejected."""
    passing = [r for r in rows if not r["label"] and not is_ng(r["score"], threshold)]
    caught = [r for r in rows if r["label"] and is_ng(r["score"], threshold)]
    closest = []
    if passing:
        closest.append(max(passing, key=lambda r: r["score"]))
    if caught:
        closest.append(min(caught, key=lambda r: r["score"]))
    return closest


def gallery_title(rows: list[dict], threshold: float, variant: str, kind: Kind) -> str:
    """What a gallery shows, with the NG rule's counts; says so plainly when there is nothing to show."""
    t = f"{threshold:.4g}"
    wrong = len(errors(rows, threshold, kind))
    if kind == "false rejects":
        total = sum(1 for r in rows if not r["label"])
        if not wrong:
            return f"No false rejects at {t} ({variant}): all {total} good images pass"
        title = f"False rejects at {t} ({variant}): {wrong} of {total} good images rejected, worst first"
    else:
        total = sum(1 for r in rows if r["label"])
        if not wrong:
            return f"No escapes at {t} ({variant}): all {total} defect images are rejected"
        title = f"Escapes at {t} ({variant}): {wrong} of {total} defect images pass as OK, worst first"
    return title + (f" ({LIMIT} shown)" if wrong > LIMIT else "")


def _tile(out: Path, name: str, row: dict, image: np.ndarray | None, anomaly_map: np.ndarray | None, threshold: float,
          roi: tuple[int, int, int, int] | None) -> Tile:  # fmt: skip
    verdict = "NG" if is_ng(row["score"], threshold) else "OK"
    caption = f"{row['kind']} {Path(row['path']).name}: score {row['score']:.4g}, {verdict}"
    if image is None or anomaly_map is None:
        return Tile(None, f"{caption} (image not readable here: {row['path']})")
    part = crop_roi(image, roi)
    overlay = heatmap_overlay(part, np.squeeze(anomaly_map), threshold)
    cv2.imwrite(str(out / name), np.concatenate([part, overlay], axis=1))
    return Tile(name, caption)


def galleries(
    out: Path,
    rows: list[dict],
    images: list[np.ndarray | None],
    maps: list[np.ndarray | None],
    threshold: float,
    variant: str,
    roi: tuple[int, int, int, int] | None = None,
) -> list[Gallery]:
    """False rejects, escapes and closest calls of ``variant`` at ``threshold``; overlays go to ``out/overlays``.

    Args:
        out: Report folder.
        rows: Per test image: ``path``, ``label`` (1 = defect), ``kind``, ``score``.
        images: The test images in ``rows`` order (None: not readable here).
        maps: Their anomaly maps from the runtime, same order.
        threshold: NG when ``score >= threshold``.
        variant: Variant name, for the titles.
        roi: The bundle's region of interest (the maps cover only it).
    """
    folder = out / "overlays"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    index = {id(r): i for i, r in enumerate(rows)}
    shown = {
        "false_reject": (
            gallery_title(rows, threshold, variant, "false rejects"),
            errors(rows, threshold, "false rejects"),
        ),
        "escape": (gallery_title(rows, threshold, variant, "escapes"), errors(rows, threshold, "escapes")),
        "closest": (
            f"Closest calls at {threshold:.4g} ({variant}): the highest-scoring good image that passes and the "
            "lowest-scoring defect that is rejected",
            closest_calls(rows, threshold),
        ),
    }
    out_galleries = []
    for prefix, (title, picked) in shown.items():
        tiles = []
        for n, row in enumerate(picked[:LIMIT]):
            i = index[id(row)]
            name = f"overlays/{prefix}_{n:02d}_{row['kind']}_{Path(row['path']).stem}.png"
            tiles.append(_tile(out, name, row, images[i], maps[i], threshold, roi))
        out_galleries.append(Gallery(title, tiles))
    return out_galleries
