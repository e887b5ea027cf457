"""MVTec AD directory layout: <category>/{train/good, test/<kind>, ground_truth/<kind>}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ad.errors import DatasetError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # read_images names the bad file itself

__all__ = ["IMAGE_SUFFIXES", "Category", "find_category", "list_images", "mask_path", "read_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in name order (not recursive)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def mask_path(image: Path) -> Path:
    """Where MVTec AD keeps a test image's ground-truth mask: ``ground_truth/<kind>/<stem>_mask.png``.

    Good images have none: their mask is all zero.
    """
    kind = image.parent
    return kind.parent.parent / "ground_truth" / kind.name / f"{image.stem}_mask.png"


def read_images(paths: list[Path], what: str = "") -> list[np.ndarray]:
    """BGR images as OpenCV reads them (the runtime's frame format).

    Raises:
        DatasetError: A file is not a readable image (``what`` prefixes the message, e.g. an option).
    """
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{what}{': ' if what else ''}{path} is not a readable image; remove or replace it")
        images.append(image)
    return images


@dataclass(frozen=True)
class Category:
    """One product category laid out like MVTec AD."""

    root: Path

    @property
    def name(self) -> str:
        """Category name (the directory name)."""
        return self.root.name

    @property
    def train_good(self) -> Path:
        """Good images used for fitting."""
        return self.root / "train" / "good"

    @property
    def test_good(self) -> Path:
        """Good images held out for evaluation."""
        return self.root / "test" / "good"

    @property
    def defect_kinds(self) -> list[str]:
        """Names of the defect folders under test/."""
        return sorted(p.name for p in (self.root / "test").iterdir() if p.is_dir() and p.name != "good")

    def test_images(self) -> list[tuple[Path, int, str]]:
        """All test images as (path, label, kind) with label 1 for defects."""
        items = [(p, 0, "good") for p in list_images(self.test_good)]
        for kind in self.defect_kinds:
            items += [(p, 1, kind) for p in list_images(self.root / "test" / kind)]
        return items


def find_category(path: str | Path) -> Category:
    """Check that ``path`` is an MVTec-style category directory.

    Raises:
        DatasetError: train/good or test/good is missing or empty.
    """
    category = Category(Path(path).resolve())
    for folder in (category.train_good, category.test_good):
        if not folder.is_dir() or not list_images(folder):
            raise DatasetError(
                f"{folder}: missing or has no images; --data must be a category directory with "
                "train/good, test/good and test/<defect> (run 'edge-ad make-dataset' for an example)"
            )
    return category
