"""FastFlow: anomalib's Lightning module, 2D normalizing flows, loss and anomaly map on a lite0 backbone.

Layers: ``blocks.1``, ``blocks.2``, ``blocks.3`` by default (strides 4, 8, 16; 24, 40 and 80 channels),
the lite0 counterpart of the ResNet ``layer1``-``layer3`` anomalib's FastFlow reads from resnet18 and
wide_resnet50_2 (see :mod:`~edge_ad.export.families.lite0`).

What anomalib assumes and is replaced: ``FastflowModel.__init__`` accepts only resnet18,
wide_resnet50_2, cait and deit (a ValueError otherwise) and builds them with
``timm.create_model(..., pretrained=pre_trained)`` — a hub download. :class:`Lite0FastflowModel`
keeps its forward pass, ``create_fast_flow_block`` (FrEIA AllInOneBlocks), ``AnomalyMapGenerator``,
the Lightning module (``FastflowLoss``, Adam lr 1e-3, weight decay 1e-5) and the defaults (8 flow
steps, 3x3/1x1 alternating subnets, hidden ratio 1.0), and only builds the backbone (a
:class:`~edge_ad.export.families.lite0.Lite0Features`, no weights) and the per-layer LayerNorms and
flows from the shapes it measures at the input size (so any size works, not only multiples of 16).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from anomalib.models.image.fastflow import lightning_model
from anomalib.models.image.fastflow.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.fastflow.torch_model import FastflowModel, create_fast_flow_block
from torch import nn

from edge_ad.export.families.base import Family
from edge_ad.export.families.data import pre_processor
from edge_ad.export.families.lite0 import Lite0Features, swapped
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY", "Lite0FastflowModel"]

FLOW_STEPS = 8  # anomalib's default (its resnet18 configuration)
HIDDEN_RATIO = 1.0
CONV3X3_ONLY = False


class Lite0FastflowModel(FastflowModel):
    """anomalib's ``FastflowModel`` with a lite0 feature extractor built offline.

    ``pre_trained`` is accepted for anomalib's call and ignored: the weights are loaded afterwards.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = False,
        flow_steps: int = FLOW_STEPS,
        conv3x3_only: bool = CONV3X3_ONLY,
        hidden_ratio: float = HIDDEN_RATIO,
    ) -> None:
        nn.Module.__init__(self)  # FastflowModel.__init__ would refuse the backbone
        self.input_size = tuple(input_size)
        self.feature_extractor = Lite0Features(backbone, layers, self.input_size)
        dims = [
            [c, h, w] for c, (h, w) in zip(self.feature_extractor.channels, self.feature_extractor.shapes, strict=True)
        ]
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=True) for d in dims)
        self.fast_flow_blocks = nn.ModuleList(
            create_fast_flow_block(d, conv3x3_only=conv3x3_only, hidden_ratio=hidden_ratio, flow_steps=flow_steps)
            for d in dims
        )
        self.anomaly_map_generator = AnomalyMapGenerator(input_size=self.input_size)

    def _get_cnn_features(self, input_tensor: torch.Tensor) -> list[torch.Tensor]:
        features = self.feature_extractor(input_tensor).values()
        return [norm(feature) for norm, feature in zip(self.norms, features, strict=True)]


def _build(recipe: ExportRecipe) -> nn.Module:
    m = recipe.model
    model = functools.partial(Lite0FastflowModel, layers=m.resolved_layers())
    with swapped(lightning_model, "FastflowModel", model):
        return lightning_model.Fastflow(
            backbone=m.backbone,
            pre_trained=False,
            flow_steps=FLOW_STEPS,
            conv3x3_only=CONV3X3_ONLY,
            hidden_ratio=HIDDEN_RATIO,
            pre_processor=pre_processor(recipe),
            visualizer=False,
        )


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    return {"epochs": recipe.model.epochs, "flow_steps": FLOW_STEPS, "hidden_ratio": HIDDEN_RATIO}


# timm_layers=False: blocks.3 is no timm feature layer; Lite0Features checks the layers itself. The ImageNet
# weights go to module.model.feature_extractor.feature_extractor, the Family default.
FAMILY = Family(build=_build, epochs=True, timm_layers=False, params=_params)
