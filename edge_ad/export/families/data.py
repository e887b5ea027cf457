"""anomalib's data side as the runtime sees it: the MVTec folder, ROI crop and the device's resize."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from edge_ad.datasets.layout import Category
from edge_ad.export.recipe import ExportRecipe
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_frame

__all__ = ["RuntimeResize", "datamodule", "pre_processor"]


def datamodule(category: Category, recipe: ExportRecipe, train_batch_size: int | None = None):
    """Anomalib's Folder datamodule over an MVTec-layout category (masks when every defect kind has them)."""
    from anomalib.data import Folder

    kinds = category.defect_kinds
    has_masks = all((category.root / "ground_truth" / k).is_dir() for k in kinds)
    return Folder(
        name=category.name,
        root=category.root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{k}" for k in kinds],
        mask_dir=[f"ground_truth/{k}" for k in kinds] if has_masks else None,
        train_batch_size=train_batch_size or recipe.model.resolved_batch_size(),
        eval_batch_size=recipe.model.resolved_batch_size(),
        num_workers=0,
        val_split_mode="same_as_test",
        seed=recipe.seed,
    )


def pre_processor(recipe: ExportRecipe, normalize: bool = True):
    """Anomalib pre-processor doing what the runtime does: ROI crop, resize, ImageNet normalisation."""
    from anomalib.pre_processing import PreProcessor

    steps = [] if recipe.roi is None else [_RoiCrop(recipe.roi)]
    steps.append(RuntimeResize(recipe.model.image_size))
    if normalize:
        steps.append(v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
    return PreProcessor(transform=v2.Compose(steps))


class _RoiCrop(v2.Transform):
    """Crop x, y, width, height (pixels of the original frame), images and masks alike."""

    def __init__(self, roi: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.roi = roi

    def transform(self, inpt, params):
        x, y, w, h = self.roi
        return v2.functional.crop(inpt, y, x, h, w)

    _transform = transform  # older torchvision name


class RuntimeResize(v2.Transform):
    """Resize images exactly as the device does (:func:`resize_frame` on uint8); masks nearest.

    Training and evaluation thus see the pixels the station will see: OpenCV's area filter when
    shrinking, bilinear when enlarging, rounded to uint8 in between (the source images are uint8).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def transform(self, inpt, params):
        """Resize one image (device's filter, uint8 in between) or mask (nearest)."""
        size = [self.size, self.size]
        if isinstance(inpt, tv_tensors.Mask):
            return v2.functional.resize(inpt, size, interpolation=v2.InterpolationMode.NEAREST)
        if tuple(inpt.shape[-2:]) == (self.size, self.size):
            return inpt
        flat = inpt.reshape(-1, *inpt.shape[-3:])
        pixels = (flat.permute(0, 2, 3, 1).detach().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        out = np.stack([resize_frame(p, self.size, self.size).reshape(self.size, self.size, -1) for p in pixels])
        tensor = torch.from_numpy(out.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        tensor = tensor.reshape(*inpt.shape[:-2], self.size, self.size).to(inpt.device)
        return tv_tensors.wrap(tensor, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else tensor

    _transform = transform  # older torchvision name
