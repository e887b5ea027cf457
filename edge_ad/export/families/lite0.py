"""Lite0 feature taps for anomalib models written around a ResNet (FastFlow, Reverse Distillation).

anomalib's ResNet models read ``layer1``-``layer3``: the ends of the stride-4, -8 and -16 stages. On
``tf_efficientnet_lite0`` the counterparts are ``blocks.1`` (24 channels, stride 4), ``blocks.2`` (40,
stride 8) and ``blocks.3`` (80, stride 16) — the recipe default — or ``blocks.4`` (112, the end of the
stride-16 stage). timm's ``features_only`` model only exposes the last block of each stride
(blocks.0, 1, 2, 4, 6), and anomalib's ``TimmFeatureExtractor`` silently drops any other layer, so
:class:`Lite0Features` runs the blocks itself and taps any ``blocks.N``. It is built without weights
(``pretrained=False``: no hub download); ``train`` loads the packaged ImageNet weights into
:attr:`Lite0Features.feature_extractor`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from edge_ad.errors import ExportError

__all__ = ["Lite0Features", "swapped"]

_BLOCK = re.compile(r"blocks\.(\d+)")


class Lite0Features(nn.Module):
    """A frozen timm EfficientNet(-lite) returning the outputs of any of its ``blocks.N``.

    Attributes:
        feature_extractor: timm's ``features_only`` model, cut after the deepest tapped block (the
            module :func:`~edge_ad.export.weights.load_backbone_weights` fills; its op names carry
            ``.feature_extractor``, so the INT8 step treats it as backbone).
        layers: Tapped layers, shallow to deep.
        channels: Channels of each tapped layer.
        shapes: (height, width) of each tapped layer at ``input_size``.
    """

    def __init__(self, backbone: str, layers: Sequence[str], input_size: Sequence[int]) -> None:
        import timm

        super().__init__()
        net = timm.create_model(backbone, pretrained=False, features_only=True, exportable=True)
        self.layers = list(layers)
        self.indices = [_block_index(layer, backbone, len(net.blocks)) for layer in self.layers]
        if self.indices != sorted(set(self.indices)):
            raise ExportError(f"model.layers: {', '.join(self.layers)} must be distinct blocks, shallow to deep")
        net.blocks = net.blocks[: self.indices[-1] + 1]
        self.feature_extractor = net
        self.requires_grad_(False)
        with torch.no_grad():
            features = self.eval()(torch.zeros(1, 3, *input_size)).values()
        self.train()
        self.channels = [int(f.shape[1]) for f in features]
        self.shapes = [(int(f.shape[2]), int(f.shape[3])) for f in features]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer name -> feature map, as anomalib's ``TimmFeatureExtractor`` returns them.

        Always in eval mode, as anomalib's frozen extractor is: Lightning puts every module in train mode
        for training, and batch-norm would then normalise by each batch and move its running statistics.
        """
        net = self.eval().feature_extractor
        x = net.bn1(net.conv_stem(images))
        out = {}
        for i, block in enumerate(net.blocks):
            x = block(x)
            if i in self.indices:
                out[self.layers[self.indices.index(i)]] = x.contiguous()  # anomalib's RD loss flattens with view()
        return out


def _block_index(layer: str, backbone: str, blocks: int) -> int:
    match = _BLOCK.fullmatch(layer)
    if match is None or int(match[1]) >= blocks:
        raise ExportError(
            f"model.layers: {layer} is not a block of {backbone}; choose from blocks.0 .. blocks.{blocks - 1}"
        )
    return int(match[1])


@contextlib.contextmanager
def swapped(module: object, name: str, replacement: object) -> Iterator[None]:
    """Replace ``module.name`` while anomalib builds a model (its Lightning modules name their torch model)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)
