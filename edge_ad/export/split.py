"""A labelled evaluation split (validation or test) of an MVTec-style category."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Split"]


@dataclass
class Split:
    """Labelled images of one evaluation split."""

    name: str
    paths: list[Path]
    labels: np.ndarray
    kinds: list[str]
    images: list[np.ndarray] = field(repr=False, default_factory=list)

    @property
    def good(self) -> np.ndarray:
        """Mask of good images."""
        return self.labels == 0
