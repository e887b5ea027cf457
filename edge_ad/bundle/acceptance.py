"""The bundle's acceptance set: labelled images at model resolution with their FP32 scores.

Written by the export (from the validation split) and by recalibration (rescored), read by
commissioning on the device. Stored as one compressed ``.npz`` (uint8 tensors exactly as the IR
takes them, so no resize on the device can change what is compared).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ad.bundle.manifest import AcceptanceSpec
from edge_ad.bundle.store import Bundle
from edge_ad.errors import BundleError

__all__ = ["MAX_ACCEPTANCE_BYTES", "MAX_ACCEPTANCE_IMAGES", "AcceptanceSet", "pick_acceptance", "read_acceptance"]

MAX_ACCEPTANCE_IMAGES = 64
MAX_ACCEPTANCE_BYTES = 8_000_000  # uncompressed tensors; a few MB on disk


@dataclass(frozen=True)
class AcceptanceSet:
    """Images at model resolution (``[N, H, W, 3]`` uint8 BGR), labels (1 = defect), kinds and FP32 scores."""

    batches: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    fp32_scores: np.ndarray

    def write(self, path: Path) -> None:
        """Save as a compressed ``.npz`` (no pickled objects)."""
        with path.open("wb") as fh:
            np.savez_compressed(
                fh, batches=self.batches, labels=self.labels, kinds=self.kinds.astype(str), fp32_scores=self.fp32_scores
            )

    def spec(self, max_auroc_drop: float, source: str) -> AcceptanceSpec:
        """The manifest entry describing this set."""
        return AcceptanceSpec(
            images=len(self.labels),
            good=int((self.labels == 0).sum()),
            defects=int((self.labels == 1).sum()),
            max_auroc_drop=max_auroc_drop,
            source=source,
        )

    def rescored(self, fp32_scores: np.ndarray) -> AcceptanceSet:
        """The same images with new FP32 scores (a recalibrated bundle)."""
        return AcceptanceSet(self.batches, self.labels, self.kinds, np.asarray(fp32_scores, dtype=np.float64))


def pick_acceptance(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Indices of at most :data:`MAX_ACCEPTANCE_IMAGES` (and :data:`MAX_ACCEPTANCE_BYTES`) images.

    Half good and half defect where the split allows, evenly spread over each class, in input order.
    """
    limit = max(4, min(MAX_ACCEPTANCE_IMAGES, MAX_ACCEPTANCE_BYTES // (height * width * 3)))
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    n_bad = min(len(bad), max(limit // 2, limit - len(good)))
    n_good = min(len(good), limit - n_bad)

    def spread(idx: np.ndarray, n: int) -> np.ndarray:
        return idx[np.linspace(0, len(idx) - 1, n).round().astype(int)] if n else idx[:0]

    return np.sort(np.concatenate([spread(good, n_good), spread(bad, n_bad)]))


def read_acceptance(bundle: Bundle) -> AcceptanceSet | None:
    """The bundle's acceptance set, or None for bundles exported before it existed.

    Raises:
        BundleError: The file cannot be read or does not match the manifest.
    """
    spec = bundle.manifest.acceptance
    if spec is None:
        return None
    path = bundle.path / spec.file
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = AcceptanceSet(
                data["batches"], data["labels"], data["kinds"], data["fp32_scores"].astype(np.float64)
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: unreadable acceptance set ({exc}); re-copy the bundle or re-export") from None
    m = bundle.manifest.input
    n = len(loaded.labels)
    if loaded.batches.shape != (n, m.height, m.width, 3) or loaded.batches.dtype != np.uint8 or n != spec.images:
        raise BundleError(
            f"{path}: acceptance set holds {loaded.batches.shape} {loaded.batches.dtype}, manifest says "
            f"{spec.images} images of {m.height}x{m.width}; re-export the bundle"
        )
    if len(loaded.fp32_scores) != n or len(loaded.kinds) != n:
        raise BundleError(f"{path}: acceptance set has {n} images but not as many scores and kinds; re-export")
    return loaded
