"""Where the model looks: anomaly maps of the test images against their ground-truth masks.

Masks follow the MVTec AD layout (``ground_truth/<kind>/<stem>_mask.png``); a good image's mask is
all zero. Masks are cropped to the bundle's ROI (the model never sees outside it). Evaluation runs
at the mask's resolution, shrunk (nearest neighbour) so its longer side is at most
:data:`MAX_SIDE` px, as anomalib evaluates MVTec at 256 px; each anomaly map is resized
(bilinear) to that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ad.bundle import Bundle
from edge_ad.calibrate.pixel import AUPRO_FPR_LIMIT, aupro, pixel_auroc
from edge_ad.datasets.layout import mask_path
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.preprocess import crop_roi
from edge_ad.types import Frame

__all__ = ["MAX_SIDE", "PixelResult", "Truth", "anomaly_maps", "ground_truth", "pixel_result"]

MAX_SIDE = 256
Roi = tuple[int, int, int, int] | None


@dataclass(frozen=True)
class Truth:
    """Ground-truth masks of a split (true on defect pixels), or None, with what the report says about them."""

    masks: list[np.ndarray] | None
    note: str


@dataclass(frozen=True)
class PixelResult:
    """Localisation of one variant on the split."""

    pixel_auroc: float
    aupro: float


def anomaly_maps(bundle: Bundle, variant: str, images: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """The runtime's anomaly map of each image (None where the image is missing)."""
    model = AnomalyModel(bundle, variant=variant, device="CPU")
    maps: list[np.ndarray | None] = []
    for i, image in enumerate(images):
        result = None if image is None else model.infer(Frame(image=image, ts=0.0, index=i + 1))
        maps.append(None if result is None else result.anomaly_map)
    return maps


def _size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of the evaluation for a mask of ``shape``."""
    h, w = shape[:2]
    scale = min(1.0, MAX_SIDE / max(h, w))
    return max(1, round(w * scale)), max(1, round(h * scale))


def ground_truth(paths: list[Path], labels: np.ndarray, images: list[np.ndarray | None], roi: Roi) -> Truth:
    """Masks of the split's images at evaluation size, or None and why pixel metrics are skipped."""
    missing_images = [p for p, image in zip(paths, images, strict=True) if image is None]
    if missing_images:
        count, example = len(missing_images), missing_images[0]
        return Truth(None, f"Pixel metrics skipped: {count} test images are not readable here (e.g. {example}).")
    defects = [p for p, label in zip(paths, labels, strict=True) if label]
    unmasked = [p for p in defects if not mask_path(p).is_file()]
    if unmasked:
        return Truth(
            None,
            f"Pixel metrics skipped: {len(unmasked)} of {len(defects)} defect images have no ground-truth mask "
            f"(e.g. {mask_path(unmasked[0])}).",
        )
    masks = []
    for path, label, image in zip(paths, labels, images, strict=True):
        assert image is not None
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        if label:
            found = cv2.imread(str(mask_path(path)), cv2.IMREAD_GRAYSCALE)
            if found is None:
                return Truth(None, f"Pixel metrics skipped: {mask_path(path)} is not a readable image.")
            mask = cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST) if found.shape != (h, w) else found
        mask = crop_roi(mask, roi)
        masks.append(cv2.resize(mask, _size(mask.shape), interpolation=cv2.INTER_NEAREST) > 127)
    where = " inside the ROI" if roi else ""
    if not any(m.any() for m in masks):
        return Truth(None, f"Pixel metrics skipped: the masks mark no defect pixel{where}.")
    h, w = masks[0].shape
    return Truth(
        masks,
        f"Ground truth: MVTec-layout masks of the {len(defects)} defect images (good images: all zero){where}. "
        f"Evaluated at the masks' resolution (at most {MAX_SIDE} px a side, here {w}×{h}); anomaly maps are resized "
        f"to it (bilinear), masks shrunk with nearest neighbour. AUPRO: mean overlap per connected defect region, "
        f"integrated up to a {AUPRO_FPR_LIMIT:.0%} pixel false-positive rate and divided by it (MVTec AD).",
    )


def pixel_result(maps: list[np.ndarray | None], truth: Truth) -> PixelResult | None:
    """Pixel AUROC and AUPRO of ``maps`` against ``truth`` (None without masks or maps)."""
    if truth.masks is None or any(m is None for m in maps):
        return None
    resized = [
        cv2.resize(np.squeeze(m).astype(np.float32), (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR)
        for m, g in zip(maps, truth.masks, strict=True)
        if m is not None
    ]
    return PixelResult(pixel_auroc(resized, truth.masks), aupro(resized, truth.masks))
