"""Deterministic synthetic inspection data from scikit-image textures (MVTec AD layout).

Good parts are random crops of a texture with small lighting changes; defects (scratch, stain,
hole) are painted on good crops and come with pixel masks. The same seed gives byte-identical
files, so tests and recipes are reproducible without downloading MVTec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CATEGORIES", "DEFECTS", "DatasetSpec", "make_dataset"]

# texture loader name in skimage.data, BGR tint applied to the grey texture
CATEGORIES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "brick": ("brick", (0.55, 0.65, 1.0)),
    "gravel": ("gravel", (0.9, 0.95, 1.0)),
    "grass": ("grass", (0.6, 1.0, 0.7)),
}


@dataclass(frozen=True)
class DatasetSpec:
    """How much data to generate per category."""

    size: int = 128
    train: int = 60
    test_good: int = 15
    test_defect: int = 10
    seed: int = 0
    strength: float = 1.0  # defect opacity: 1 = as painted, lower = subtler (harder) defects


Painter = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _scale(image: np.ndarray) -> float:
    return image.shape[0] / 128.0


def _scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    s = _scale(image)
    start = rng.uniform(0.2, 0.8, 2) * (w, h)
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.25, 0.45) * w
    mid = start + length / 2 * np.array([np.cos(angle), np.sin(angle)]) + rng.normal(0, 3 * s, 2)
    end = start + length * np.array([np.cos(angle + rng.normal(0, 0.2)), np.sin(angle + rng.normal(0, 0.2))])
    pts = np.round(np.stack([start, mid, end])).astype(np.int32).reshape(-1, 1, 2)
    mask = np.zeros((h, w), np.uint8)
    thickness = max(2, round(2 * s))
    cv2.polylines(mask, [pts], False, 255, thickness, cv2.LINE_AA)
    color = 25.0 if rng.random() < 0.5 else 235.0
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    image[:] = np.clip(image * (1 - alpha) + color * alpha, 0, 255)
    return mask


def _stain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    s = _scale(image)
    center = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
    axes = (int(rng.uniform(7, 14) * s), int(rng.uniform(5, 10) * s))
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    soft = cv2.GaussianBlur(mask, (0, 0), 2 * s).astype(np.float32)[..., None] / 255.0
    tint = np.array(rng.choice([(40, 90, 140), (140, 60, 160), (60, 140, 60)]), np.float32)
    image[:] = np.clip(image * (1 - 0.65 * soft) + tint * 0.65 * soft, 0, 255)
    return mask


def _hole(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    s = _scale(image)
    center = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
    radius = int(rng.uniform(4, 8) * s)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, center, radius, 255, -1, cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    image[:] = np.clip(image * (1 - alpha) + 12.0 * alpha, 0, 255)
    return mask


DEFECTS: dict[str, Painter] = {"scratch": _scratch, "stain": _stain, "hole": _hole}


def _texture(name: str) -> np.ndarray:
    from skimage import data  # export extra; imported here so the runtime never needs it

    loader, tint = CATEGORIES[name]
    grey = getattr(data, loader)().astype(np.float32)
    return np.stack([grey * t for t in tint], axis=-1)


def _good(texture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    crop = int(texture.shape[0] * 0.4)
    y, x = rng.integers(0, texture.shape[0] - crop, 2)
    patch = texture[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = patch * rng.uniform(0.95, 1.05) + rng.uniform(-5, 5)
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(np.round(image), 0, 255).astype(np.uint8))


def make_dataset(out: str | Path, categories: list[str] | None = None, spec: DatasetSpec | None = None) -> list[Path]:
    """Write one MVTec-layout directory per category under ``out``.

    Args:
        out: Output root; ``out/<category>/{train,test,ground_truth}`` are created.
        categories: Names from :data:`CATEGORIES`; default brick and gravel.
        spec: Counts, image size and seed.

    Returns:
        The category directories written.
    """
    spec = spec or DatasetSpec()
    categories = categories or ["brick", "gravel"]
    written = []
    for name in categories:
        if name not in CATEGORIES:
            raise ValueError(f"unknown category {name!r}; choose from {', '.join(CATEGORIES)}")
        rng = np.random.default_rng([spec.seed, list(CATEGORIES).index(name)])  # same data whatever else is asked
        texture = _texture(name)
        root = Path(out) / name
        for i in range(spec.train):
            _write(root / "train" / "good" / f"{i:03d}.png", _good(texture, spec.size, rng))
        for i in range(spec.test_good):
            _write(root / "test" / "good" / f"{i:03d}.png", _good(texture, spec.size, rng))
        for kind, paint in DEFECTS.items():
            for i in range(spec.test_defect):
                image = _good(texture, spec.size, rng)
                clean = image.copy()
                mask = paint(image, rng)
                if spec.strength != 1.0:
                    image[:] = clean + spec.strength * (image - clean)
                _write(root / "test" / kind / f"{i:03d}.png", image)
                _write(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
        written.append(root)
    return written
