"""Feature autoencoder in the manner of DFR (Yang et al. 2020): reconstruct frozen lite0 features with 1x1 convs.

Layers (default ``blocks.1``-``blocks.3``, strides 4-16) are average-pooled 3x3, resized to the finest
layer's grid (stride 4) and concatenated; the anomaly map is the per-location squared error summed over
channels, the image score its maximum.
"""

from __future__ import annotations

from torch import nn

from edge_ad.export.families.base import Family
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY", "LEARNING_RATE"]

LATENT = 32  # code channels of the 1x1 autoencoder (lite0 blocks.1-3: 144 channels in)
LEARNING_RATE = 2e-3  # Adam; not recipe.model.learning_rate, which is tuned for EfficientAD (see autoencoder.py)


def _build(recipe: ExportRecipe) -> nn.Module:
    from edge_ad.export.families.baseline_nets import FeatureAutoencoder, lightning_classes

    m = recipe.model
    gradient, _ = lightning_classes()
    net = FeatureAutoencoder(m.backbone, m.resolved_layers(), m.image_size, LATENT)
    return gradient(net, pre_processor(recipe), LEARNING_RATE)


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    return {"epochs": recipe.model.epochs, "learning_rate": LEARNING_RATE, "latent": LATENT, "grid": "finest layer"}


# timm_layers=False: any lite0 block can be tapped (blocks.3 is no timm feature layer); Lite0Features checks them
FAMILY = Family(
    build=_build,
    epochs=True,
    backbone=lambda module: module.model.backbone.feature_extractor,
    timm_layers=False,
    params=_params,
)
