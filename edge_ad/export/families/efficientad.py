"""EfficientAD with our offline teacher (``export/teacher.py``) and a local penalty set: no downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import torch
from torch import nn

from edge_ad.export.families.base import Family, Trained, ancestors
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY", "TrainedEfficientAd"]


@dataclass
class TrainedEfficientAd(Trained):
    """EfficientAD: teacher, student and autoencoder are quantizable; map arithmetic stays FP32."""

    honours_keep_fp32 = False  # no lite backbone; PDN convolutions all run at high resolution, INT8 is the gain

    @property
    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """EfficientAD normalises inside its forward pass; the frame only goes to 0..1."""
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Everything that is not inside the three networks."""
        nets: set[str] = set()
        for op in scoring.get_ordered_ops():
            name = op.get_friendly_name()
            if op.get_type_name() == "Convolution" and any(f".{n}." in name for n in ("teacher", "student", "ae")):
                nets |= ancestors(op)
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in nets]


def _efficientad_class():
    from anomalib.models import EfficientAd
    from torch.utils.data import DataLoader, Dataset

    class _Photos(Dataset):
        def __init__(self, paths: list[Path], transform) -> None:
            self.paths, self.transform = paths, transform

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int):
            from PIL import Image

            with Image.open(self.paths[i]) as image:
                return self.transform(image.convert("RGB")), 0

    class OfflineEfficientAd(EfficientAd):
        """anomalib EfficientAD with our distilled teacher and a local penalty set (no downloads).

        Below 256 px the autoencoder's last encoder convolution shrinks with the input
        (kernel = size / 32; 8 at 256 px, as in the paper) so any multiple of 32 from 128 works.
        """

        teacher_state: dict
        penalty: list[Path]
        seed = 0
        image_size: int  # the model input; the datamodule's raw images may differ, so anomalib's hint is ignored

        def prepare_pretrained_model(self) -> None:
            self.model.teacher.load_state_dict(self.teacher_state)

        def _as_model_input(self, dataloader):
            """The statistics loops of anomalib read the dataloader raw; give them the pre-processed images."""
            for batch in dataloader:
                batch.image = self.pre_processor.transform(batch.image)
                yield batch

        def teacher_channel_mean_std(self, dataloader):
            return super().teacher_channel_mean_std(self._as_model_input(dataloader))

        def map_norm_quantiles(self, dataloader):
            return super().map_norm_quantiles(self._as_model_input(dataloader))

        def prepare_imagenette_data(self, image_size) -> None:
            from torchvision.transforms.v2 import CenterCrop, Compose, RandomGrayscale, Resize, ToTensor

            h = w = self.image_size
            self.data_transforms_imagenet = Compose(
                [Resize((h * 2, w * 2)), RandomGrayscale(p=0.3), CenterCrop((h, w)), ToTensor()]
            )
            generator = torch.Generator().manual_seed(self.seed)
            self.imagenet_loader = DataLoader(
                _Photos(self.penalty, self.data_transforms_imagenet), batch_size=1, shuffle=True, generator=generator
            )
            self.imagenet_iterator = iter(self.imagenet_loader)

    return OfflineEfficientAd


def _build(recipe: ExportRecipe) -> nn.Module:
    from edge_ad.export.teacher import cached_teacher, load_teacher, penalty_images

    m = recipe.model
    teacher = m.teacher or cached_teacher(m.efficientad_size)
    state, channels = load_teacher(teacher, m.efficientad_size)
    module = _efficientad_class()(
        teacher_out_channels=channels,
        model_size=m.efficientad_size,
        lr=m.learning_rate,
        pre_processor=pre_processor(recipe, normalize=False),
        visualizer=False,
    )
    module.teacher_state, module.penalty, module.seed = state, penalty_images(m.penalty_dir), recipe.seed
    module.image_size = m.image_size
    kernel = m.image_size // 32
    module.model.ae.encoder.enconv6 = nn.Conv2d(64, 64, kernel_size=kernel, stride=1, padding=0)
    return module


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    m = recipe.model
    return {
        "epochs": m.epochs,
        "size": m.efficientad_size,
        "learning_rate": m.learning_rate,
        "teacher_channels": int(module.model.teacher_out_channels),
        "penalty_images": len(module.penalty),
    }


# EfficientAD's teacher was distilled from the backbone already: no ImageNet weights to load, no timm layers
FAMILY = Family(
    build=_build,
    trained=TrainedEfficientAd,
    epochs=True,
    backbone=None,
    timm_layers=False,
    train_batch_size=1,
    params=_params,
)
