"""Reverse Distillation: anomalib's Lightning module, loss and anomaly map; lite0 encoder, bottleneck, decoder.

Layers: ``blocks.1``, ``blocks.2``, ``blocks.3`` by default (strides 4, 8, 16; 24, 40 and 80 channels),
the lite0 counterpart of the ResNet ``layer1``-``layer3`` RD reads (see
:mod:`~edge_ad.export.families.lite0`). Any three blocks, each at half the previous resolution, work.

What anomalib assumes and is replaced (in ``ReverseDistillationModel.__init__``):

* the encoder is a ``TimmFeatureExtractor`` built ``pre_trained=True`` (a hub download) that drops
  ``blocks.3`` (no timm feature layer): a :class:`~edge_ad.export.families.lite0.Lite0Features`;
* ``get_bottleneck_layer`` returns an OCBE for ResNet widths (64/128/256 x expansion channels):
  :class:`Lite0Bottleneck` is anomalib's OCBE (its forward, residual ``BasicBlock`` layer and
  initialisation) with the widths taken from the encoder;
* ``get_decoder`` only knows ResNets (a ValueError otherwise): :class:`Lite0Decoder` is anomalib's
  ``ResNetDecoder`` (its ``DecoderBasicBlock`` stages) mirroring the encoder's channels.

Kept: the forward pass, ``ReverseDistillationLoss``, ``AnomalyMapGenerator`` (mode add, sigma 4) and
the optimizer (Adam lr 0.005, betas 0.5/0.99 on bottleneck and decoder).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import openvino as ov
import torch
from anomalib.models.components.backbone.resnet_decoder import DecoderBasicBlock, ResNetDecoder
from anomalib.models.image.reverse_distillation import lightning_model
from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode, AnomalyMapGenerator
from anomalib.models.image.reverse_distillation.components.bottleneck import OCBE, conv3x3
from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
from torch import nn
from torch.nn import functional
from torchvision.models.resnet import BasicBlock

from edge_ad.errors import ExportError
from edge_ad.export.families.base import Family, Trained
from edge_ad.export.families.data import pre_processor
from edge_ad.export.families.lite0 import Lite0Features, swapped
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY", "Lite0Bottleneck", "Lite0Decoder", "Lite0ReverseDistillationModel", "TrainedReverseDistillation"]

BLOCKS = 2  # residual blocks per bottleneck/decoder stage, as anomalib's resnet18 variant


def _init(module: nn.Module) -> None:
    """Initialise as anomalib's OCBE and ResNetDecoder do (Kaiming convolutions, unit norms)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class Lite0Bottleneck(OCBE):
    """One-class bottleneck embedding for encoder widths ``(c1, c2, c3)`` at strides s, 2s, 4s.

    As anomalib's OCBE: two strided 3x3 convolutions bring the first map to the third's grid, one the
    second; the three (``c3`` channels each) are concatenated and residual blocks fuse them, one
    stride further down, into ``2 * c3`` channels.
    """

    def __init__(self, channels: Sequence[int], blocks: int = BLOCKS) -> None:
        nn.Module.__init__(self)  # OCBE.__init__ hard-codes ResNet widths
        c1, c2, c3 = channels
        self._norm_layer, self.groups, self.base_width, self.dilation = nn.BatchNorm2d, 1, 64, 1
        self.relu = nn.ReLU(inplace=True)
        self.conv1, self.bn1 = conv3x3(c1, c2, 2), nn.BatchNorm2d(c2)
        self.conv2, self.bn2 = conv3x3(c2, c3, 2), nn.BatchNorm2d(c3)
        self.conv3, self.bn3 = conv3x3(c2, c3, 2), nn.BatchNorm2d(c3)
        self.inplanes = c3  # _make_layer takes 3 * inplanes: the concatenation
        self.bn_layer = self._make_layer(BasicBlock, 2 * c3, blocks, stride=2)
        _init(self)


class Lite0Decoder(ResNetDecoder):
    """anomalib's ResNet decoder mirroring the encoder: ``2 * c3`` -> c3 -> c2 -> c1, each stage 2x up.

    Each stage's output is cropped to the encoder map it is compared with (at input sizes that are not
    multiples of 32 the encoder rounds its grids up, the transposed convolutions double them).
    """

    def __init__(self, channels: Sequence[int], shapes: Sequence[tuple[int, int]], blocks: int = BLOCKS) -> None:
        nn.Module.__init__(self)  # ResNetDecoder.__init__ hard-codes ResNet widths
        c1, c2, c3 = channels
        self._norm_layer, self.groups, self.base_width, self.dilation = nn.BatchNorm2d, 1, 64, 1
        self.inplanes = 2 * c3
        self.layer1 = self._make_layer(DecoderBasicBlock, c3, blocks, stride=2)
        self.layer2 = self._make_layer(DecoderBasicBlock, c2, blocks, stride=2)
        self.layer3 = self._make_layer(DecoderBasicBlock, c1, blocks, stride=2)
        self.shapes = [tuple(s) for s in shapes]
        _init(self)

    def forward(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Reconstructed maps, shallow to deep (the encoder's order)."""
        feature_a = _crop(self.layer1(batch), self.shapes[2])
        feature_b = _crop(self.layer2(feature_a), self.shapes[1])
        feature_c = _crop(self.layer3(feature_b), self.shapes[0])
        return [feature_c, feature_b, feature_a]


def _crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    # contiguous: anomalib's loss flattens the maps with view()
    return x if tuple(x.shape[-2:]) == shape else x[..., : shape[0], : shape[1]].contiguous()


class Lite0ReverseDistillationModel(ReverseDistillationModel):
    """anomalib's ``ReverseDistillationModel`` with lite0 encoder, bottleneck and decoder.

    ``pre_trained`` is accepted for anomalib's call and ignored: the weights are loaded afterwards.
    """

    def __init__(
        self,
        backbone: str,
        input_size: Sequence[int],
        layers: Sequence[str],
        anomaly_map_mode: AnomalyMapGenerationMode,
        pre_trained: bool = False,
    ) -> None:
        nn.Module.__init__(self)  # ReverseDistillationModel.__init__ would need a ResNet decoder
        self.tiler = None
        self.encoder = Lite0Features(backbone, layers, input_size)
        _check_pyramid(self.encoder)
        self.bottleneck = Lite0Bottleneck(self.encoder.channels)
        self.decoder = Lite0Decoder(self.encoder.channels, self.encoder.shapes)
        self.anomaly_map_generator = AnomalyMapGenerator(image_size=tuple(input_size), mode=anomaly_map_mode)


def _check_pyramid(encoder: Lite0Features) -> None:
    """RD fuses exactly three maps, each at half the previous one's resolution."""
    heights = [h for h, _ in encoder.shapes]
    if len(heights) != 3 or any(-(-a // 2) != b for a, b in itertools.pairwise(heights)):
        raise ExportError(
            f"model.layers: reverse distillation needs three blocks at strides s, 2s, 4s "
            f"(e.g. blocks.1, blocks.2, blocks.3); {', '.join(encoder.layers)} give {heights} px grids"
        )


def cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Torch's ``cosine_similarity`` (each input over its norm clamped at ``eps``) in ops OpenVINO converts."""

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).sum(dim, keepdim=True)).clamp_min(eps)

    return (unit(x1) * unit(x2)).sum(dim)


@dataclass
class TrainedReverseDistillation(Trained):
    """RD's scoring IR: OpenVINO has no conversion for ``aten::cosine_similarity`` (the anomaly map's distance)."""

    def scoring_ir(self) -> ov.Model:
        """The default scoring IR, traced with :func:`cosine_similarity` standing in for torch's."""
        with swapped(functional, "cosine_similarity", cosine_similarity):
            return super().scoring_ir()


def _build(recipe: ExportRecipe) -> nn.Module:
    m = recipe.model
    with swapped(lightning_model, "ReverseDistillationModel", Lite0ReverseDistillationModel):
        return lightning_model.ReverseDistillation(
            backbone=m.backbone,
            layers=m.resolved_layers(),
            pre_trained=False,
            pre_processor=pre_processor(recipe),
            visualizer=False,
        )


def _backbone(module: nn.Module) -> nn.Module:
    return module.model.encoder.feature_extractor


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    return {"epochs": recipe.model.epochs, "anomaly_map_mode": str(module.anomaly_map_mode.value)}


# timm_layers=False: blocks.3 is no timm feature layer; Lite0Features checks the layers itself
FAMILY = Family(
    build=_build, trained=TrainedReverseDistillation, epochs=True, backbone=_backbone, timm_layers=False, params=_params
)
