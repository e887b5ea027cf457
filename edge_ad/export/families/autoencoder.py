"""Pixel autoencoder (the lecture's first rung): reconstruct 0..1 pixels, score the mean squared error.

The threshold defaults to mean + 3 sigma of the good validation scores (``recipe.DEFAULT_THRESHOLD``).
"""

from __future__ import annotations

from dataclasses import dataclass

import openvino as ov
from torch import nn

from edge_ad.export.families.base import Family, Trained, ancestors
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY", "LEARNING_RATE", "TrainedPixelAutoencoder"]

WIDTHS = (32, 64, 128)  # encoder channels, one stride-2 convolution each: the code is at stride 8
LATENT = 16  # code channels: 1/12 of the input values, too few to copy a texture pixel by pixel
# Adam's step. Not recipe.model.learning_rate: that knob (5e-4) is tuned for EfficientAD's distillation,
# and one setting shared by two unrelated nets would make tuning one silently retune the other.
LEARNING_RATE = 2e-3


@dataclass
class TrainedPixelAutoencoder(Trained):
    """Pixel AE: 0..1 input; its convolutions may be quantized, the squared-error head stays FP32."""

    honours_keep_fp32 = False  # keep_fp32's layers are about lite backbones; this net has none

    @property
    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The AE reconstructs pixels on the 0..1 scale: the error is in the units one sees, per channel alike."""
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Everything not inside the encoder or decoder (the error, its mean, the output resize)."""
        net: set[str] = set()
        for op in scoring.get_ordered_ops():
            if any(part in op.get_friendly_name() for part in (".encoder.", ".decoder.")):
                net |= ancestors(op)
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in net]


def _build(recipe: ExportRecipe) -> nn.Module:
    from edge_ad.export.families.baseline_nets import PixelAutoencoder, lightning_classes

    gradient, _ = lightning_classes()
    return gradient(PixelAutoencoder(WIDTHS, LATENT), pre_processor(recipe, normalize=False), LEARNING_RATE)


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    return {"epochs": recipe.model.epochs, "learning_rate": LEARNING_RATE, "widths": list(WIDTHS), "latent": LATENT}


FAMILY = Family(
    build=_build, trained=TrainedPixelAutoencoder, epochs=True, backbone=None, timm_layers=False, params=_params
)
