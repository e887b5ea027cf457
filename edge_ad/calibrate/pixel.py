"""Pixel-level localisation metrics: pixel AUROC and AUPRO (numpy + OpenCV, no torch).

``maps`` and ``masks`` are lists with one entry per image, each pair of the same shape: maps hold
raw anomaly scores, masks are true on defect pixels (all false for a good image).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge_ad.calibrate.metrics import auroc

__all__ = ["AUPRO_FPR_LIMIT", "aupro", "pixel_auroc", "pro_curve", "regions"]

AUPRO_FPR_LIMIT = 0.3  # MVTec AD: the PRO curve is integrated up to a 30 % pixel false-positive rate


def _flat(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"need one mask per map, got {len(maps)} maps and {len(masks)} masks")
    for i, (m, g) in enumerate(zip(maps, masks, strict=True)):
        if m.shape != g.shape:
            raise ValueError(f"image {i}: map {m.shape} and mask {g.shape} differ; resize one to the other first")
    preds = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    truth = np.concatenate([np.asarray(g).astype(bool).ravel() for g in masks])
    return preds, truth


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """AUROC over every pixel of every image (defect pixels against good ones).

    Raises:
        ValueError: Shapes differ, or there are no defect (or no good) pixels.
    """
    preds, truth = _flat(maps, masks)
    return auroc(truth, preds)


def regions(mask: np.ndarray) -> np.ndarray:
    """Connected defect regions of one mask (8-connected, as MVTec AD and anomalib): 0 background, 1..n."""
    _, labels = cv2.connectedComponents(np.asarray(mask).astype(np.uint8), connectivity=8)
    return labels


def pro_curve(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = AUPRO_FPR_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region overlap against the pixel false-positive rate, from (0, 0) up to ``fpr_limit``.

    At each threshold, PRO is the mean over all defect regions (of all images) of the fraction of
    the region's pixels at or above the threshold, so a small defect counts as much as a large one;
    the FPR is the fraction of good pixels at or above it. The last point is interpolated at
    ``fpr_limit``. Same algorithm as anomalib's ``AUPRO`` (ties resolved together).

    Returns:
        (fpr, pro), both increasing.

    Raises:
        ValueError: Shapes differ, there are no defect (or no good) pixels, or ``fpr_limit`` is not in (0, 1].
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    preds, _ = _flat(maps, masks)
    labels, offset = [], 0
    for mask in masks:
        found = regions(mask).astype(np.int64).ravel()
        found[found > 0] += offset
        offset = max(offset, int(found.max()))
        labels.append(found)
    label = np.concatenate(labels)
    background = label == 0
    if background.all():
        raise ValueError("AUPRO needs defect pixels: every mask is empty")
    if not background.any():
        raise ValueError("AUPRO needs good pixels: every pixel is a defect")
    sizes = np.bincount(label)
    weight = np.where(background, 0.0, 1.0 / sizes[label])
    order = np.argsort(-preds, kind="stable")
    ranked = preds[order]
    fpr = np.cumsum(background[order]) / background.sum()
    pro = np.minimum(np.cumsum(weight[order]) / offset, 1.0)
    last_of_tie = np.r_[ranked[:-1] != ranked[1:], True]
    fpr, pro = np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]
    i = int(np.flatnonzero(fpr <= fpr_limit)[-1])
    if fpr[i] < fpr_limit and i + 1 < len(fpr):
        step = (fpr_limit - fpr[i]) / (fpr[i + 1] - fpr[i])
        return np.r_[fpr[: i + 1], fpr_limit], np.r_[pro[: i + 1], pro[i] + step * (pro[i + 1] - pro[i])]
    return fpr[: i + 1], pro[: i + 1]


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (1.0: every region found first).

    Raises:
        ValueError: Shapes differ, or there are no defect (or no good) pixels.
    """
    fpr, pro = pro_curve(maps, masks, fpr_limit)
    area = float(np.sum(np.diff(fpr) * (pro[1:] + pro[:-1]) / 2))
    return area / float(fpr[-1])
