"""The lecture's three baselines as small torch modules of ours, and the thin anomalib wrapper that trains them.

Each module returns anomalib's ``InferenceBatch(pred_score [N], anomaly_map [N, 1, H, W])`` (raw,
un-normalised), the contract :class:`~edge_ad.export.families.base.RawOutputs` exports:

- :class:`PixelAutoencoder`: map = per-pixel squared reconstruction error (mean over channels), score = its mean.
- :class:`FeatureAutoencoder` (DFR): map = per-location squared error of backbone features reconstructed by
  a 1x1-conv autoencoder (sum over channels, upsampled), score = its max.
- :class:`GlobalKnn`: score = mean distance of the image's pooled embedding to its k nearest good images.

Backbone taps live under a ``feature_extractor`` module, so :data:`~edge_ad.export.families.base.BACKBONE_MARKERS`
finds them (INT8 quantizes them; the heads stay FP32).
"""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from edge_ad.export.families.lite0 import Lite0Features

__all__ = [
    "FeatureAutoencoder",
    "GlobalKnn",
    "PixelAutoencoder",
    "lightning_classes",
    "pairwise_distances",
    "pixel_error",
]


class _FrozenBackbone(nn.Module):
    """A net on a frozen :class:`Lite0Features` ``self.backbone`` (always in eval mode), run without gradients."""

    backbone: Lite0Features

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped layers' feature maps, shallow to deep."""
        with torch.no_grad():
            return list(self.backbone(x).values())


def pixel_error(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error, mean over channels: ``[N, 1, H, W]``."""
    return (images - reconstruction).pow(2).mean(dim=1, keepdim=True)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class PixelAutoencoder(nn.Module):
    """Convolutional autoencoder on 0..1 RGB pixels (no backbone).

    The encoder halves the resolution once per width (stride 8 for three) and squeezes to ``latent``
    channels; the decoder mirrors it (widest at the coarsest grid) and ends in a sigmoid. Inputs of any
    size work (the output is resized back when the size is not a multiple of the total stride).
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), latent: int = 16) -> None:
        super().__init__()
        chans = (3, *widths)
        self.encoder = nn.Sequential(
            *(_down(a, b) for a, b in itertools.pairwise(chans)), nn.Conv2d(widths[-1], latent, 1)
        )
        back = tuple(reversed(widths))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, widths[-1], 1),
            nn.ReLU(),
            *(_up(a, b) for a, b in itertools.pairwise(back)),
            nn.ConvTranspose2d(widths[0], 3, 4, stride=2, padding=1),
        )

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (same shape, 0..1)."""
        return _resize(torch.sigmoid(self.decoder(self.encoder(x))), x.shape[-2:])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: mean squared reconstruction error."""
        return pixel_error(x, self.reconstruct(x)).mean()

    def forward(self, x: torch.Tensor) -> InferenceBatch:
        """Map = per-pixel MSE, score = its mean over the image."""
        anomaly_map = pixel_error(x, self.reconstruct(x))
        return InferenceBatch(pred_score=anomaly_map.mean(dim=(1, 2, 3)), anomaly_map=anomaly_map)


def _conv1x1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU())


class FeatureAutoencoder(_FrozenBackbone):
    """DFR: multi-layer backbone features on one grid, reconstructed by a 1x1-conv autoencoder.

    Each tapped layer is average-pooled 3x3 (stride 1: every location sees its neighbourhood, DFR's
    regional features) and resized bilinearly to the grid of the finest tapped layer; the concatenation
    (``channels``) goes through ``channels -> 2*latent -> latent -> 2*latent -> channels``.
    """

    def __init__(self, backbone: str, layers: list[str], size: int, latent: int = 32) -> None:
        super().__init__()
        self.backbone = Lite0Features(backbone, layers, (size, size))
        channels = sum(self.backbone.channels)
        self.ae = nn.Sequential(
            _conv1x1(channels, 2 * latent),
            _conv1x1(2 * latent, latent),
            _conv1x1(latent, 2 * latent),
            nn.Conv2d(2 * latent, channels, 1),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, resized and concatenated features ``[N, C, h, w]`` (h, w: the finest layer's grid)."""
        features = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.taps(x)]
        grid = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
        return torch.cat([_resize(f, grid) for f in features], dim=1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss: mean squared feature reconstruction error."""
        features = self.embed(x)
        return (features - self.ae(features)).pow(2).mean()

    def forward(self, x: torch.Tensor) -> InferenceBatch:
        """Map = squared error summed over channels, upsampled to the input; score = the map's maximum."""
        features = self.embed(x)
        anomaly_map = _resize((features - self.ae(features)).pow(2).sum(dim=1, keepdim=True), x.shape[-2:])
        return InferenceBatch(pred_score=anomaly_map.amax(dim=(1, 2, 3)), anomaly_map=anomaly_map)


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear resize of ``[N, C, h, w]`` to ``size`` (no-op when it has that size)."""
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[N, M]`` between the rows of ``a [N, D]`` and ``b [M, D]``."""
    squared = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None] - 2 * a @ b.T
    return squared.clamp_min(0).sqrt()


class GlobalKnn(_FrozenBackbone):
    """kNN on global embeddings: one average-pooled (optionally L2-normalised) vector per image.

    ``memory`` holds the good training images' vectors (a constant in the IR). Score: the mean
    distance to the ``k`` nearest of them. Map (a coarse stand-in): every location of the unpooled
    feature map, normalised the same way, at its distance to the nearest good global vector,
    upsampled to the input — which cells look least like any good image as a whole.
    """

    def __init__(self, backbone: str, layer: str, k: int = 1, normalize: bool = True) -> None:
        super().__init__()
        self.backbone = Lite0Features(backbone, [layer], (64, 64))
        self.k, self.normalize = k, normalize
        self.register_buffer("memory", torch.empty(0, 0))
        self._store: list[torch.Tensor] = []

    def _norm(self, v: torch.Tensor, dim: int) -> torch.Tensor:
        return F.normalize(v, dim=dim) if self.normalize else v

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The tapped layer ``[N, D, h, w]``."""
        return self.taps(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One vector per image ``[N, D]``."""
        return self._norm(self.features(x).mean(dim=(2, 3)), dim=1)

    def store(self, x: torch.Tensor) -> None:
        """Keep the embeddings of a batch of good images (training)."""
        self._store.append(self.embed(x).detach())

    def fit(self) -> None:
        """The stored embeddings become the memory."""
        self.memory = torch.cat(self._store)
        self._store.clear()

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mean distance ``[N]`` of each embedding to its ``k`` nearest memory rows."""
        k = min(self.k, self.memory.shape[0])
        return pairwise_distances(embeddings, self.memory).topk(k, dim=1, largest=False).values.mean(dim=1)

    def forward(self, x: torch.Tensor) -> InferenceBatch:
        """Score from the pooled vector; map from the unpooled locations (see the class docstring)."""
        features = self.features(x)
        n, d, h, w = features.shape
        score = self.score(self._norm(features.mean(dim=(2, 3)), dim=1))
        cells = self._norm(features.permute(0, 2, 3, 1).reshape(-1, d), dim=1)
        nearest = pairwise_distances(cells, self.memory).amin(dim=1).reshape(n, 1, h, w)
        anomaly_map = _resize(nearest, x.shape[-2:])
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)


@functools.cache
def lightning_classes() -> tuple[type, type]:
    """Lightning modules (anomalib) around these nets: (trained by gradient, fitted in one pass).

    Both take ``(model, pre_processor)``; the gradient one also ``learning_rate`` (Adam on the
    parameters that need gradients). Validation and prediction run the net in eval mode.
    """
    from anomalib import LearningType
    from anomalib.models.components import AnomalibModule, MemoryBankMixin

    class _Baseline(AnomalibModule):
        """One-class anomalib module scoring with ``self.model``; no visualizer."""

        def __init__(self, model: nn.Module, pre_processor: nn.Module) -> None:
            super().__init__(pre_processor=pre_processor, visualizer=False)
            self.model = model

        @property
        def learning_type(self) -> LearningType:
            return LearningType.ONE_CLASS

        @property
        def trainer_arguments(self) -> dict:
            return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

        def validation_step(self, batch, *args, **kwargs):
            """Raw scores and maps into the batch."""
            return batch.update(**self.model(batch.image)._asdict())

    class GradientBaseline(_Baseline):
        """An autoencoder trained by Adam on its ``loss``."""

        def __init__(self, model: nn.Module, pre_processor: nn.Module, learning_rate: float) -> None:
            super().__init__(model, pre_processor)
            self.learning_rate = learning_rate

        def training_step(self, batch, *args, **kwargs):
            """One Adam step on the reconstruction loss of a batch of good images."""
            loss = self.model.loss(batch.image)
            self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=False)
            return {"loss": loss}

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.learning_rate)

    class MemoryBaseline(MemoryBankMixin, _Baseline):
        """A memory of good embeddings gathered in one pass (``model.store``, then ``model.fit``)."""

        @property
        def trainer_arguments(self) -> dict:
            return {**super().trainer_arguments, "max_epochs": 1}

        def training_step(self, batch, *args, **kwargs):
            """Store the batch's embeddings."""
            self.model.store(batch.image)
            return torch.tensor(0.0, requires_grad=True, device=self.device)

        def fit(self) -> None:
            """The stored embeddings become the memory."""
            self.model.fit()

        @staticmethod
        def configure_optimizers() -> None:
            return None

    return GradientBaseline, MemoryBaseline
