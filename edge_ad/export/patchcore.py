"""PatchCore training with anomalib and conversion of its feature extractor to OpenVINO."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import torch
from torch import nn

from edge_ad.datasets.layout import Category
from edge_ad.export.weights import load_backbone_weights, packaged_weights
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, embed_preprocessing

__all__ = ["PatchcoreParams", "TrainedPatchcore", "features_ir", "memory_bank", "train_patchcore"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchcoreParams:
    """Training parameters (recorded in the manifest)."""

    backbone: str = "tf_efficientnet_lite0"
    layers: tuple[str, ...] = ("blocks.2", "blocks.4")
    image_size: int = 128
    coreset_ratio: float = 0.1
    num_neighbors: int = 9
    seed: int = 0
    batch_size: int = 16


@dataclass
class TrainedPatchcore:
    """anomalib's trained Lightning module plus what is needed to predict with it."""

    model: nn.Module  # anomalib.models.Patchcore
    engine: object  # anomalib.engine.Engine
    datamodule: object  # anomalib.data.Folder
    weights: Path


def _datamodule(category: Category, params: PatchcoreParams, workdir: Path):
    from anomalib.data import Folder

    kinds = category.defect_kinds
    masks = [category.root / "ground_truth" / k for k in kinds]
    return Folder(
        name=category.name,
        root=category.root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{k}" for k in kinds],
        mask_dir=[f"ground_truth/{k}" for k in kinds] if all(m.is_dir() for m in masks) else None,
        train_batch_size=params.batch_size,
        eval_batch_size=params.batch_size,
        num_workers=0,
        val_split_mode="same_as_test",
        seed=params.seed,
    )


def train_patchcore(
    category: Category, params: PatchcoreParams, workdir: Path, weights: Path | None = None
) -> TrainedPatchcore:
    """Fit anomalib's PatchCore on the category's good training images, offline.

    Args:
        category: MVTec-style category directory.
        params: Backbone, layers, image size, coreset ratio and seed.
        workdir: Scratch directory for anomalib/Lightning outputs.
        weights: Backbone ImageNet weights; default: the installed weights package.
    """
    from anomalib.engine import Engine
    from anomalib.models import Patchcore
    from lightning.pytorch import seed_everything

    seed_everything(params.seed, workers=True)
    weights = weights or packaged_weights(params.backbone)
    size = (params.image_size, params.image_size)
    model = Patchcore(
        backbone=params.backbone,
        layers=list(params.layers),
        pre_trained=False,
        coreset_sampling_ratio=params.coreset_ratio,
        num_neighbors=params.num_neighbors,
        pre_processor=Patchcore.configure_pre_processor(image_size=size),
        visualizer=False,
    )
    loaded = load_backbone_weights(model.model.feature_extractor.feature_extractor, weights)
    logger.info("backbone %s: %d tensors from %s", params.backbone, loaded, weights)
    datamodule = _datamodule(category, params, workdir)
    engine = Engine(
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    return TrainedPatchcore(model=model, engine=engine, datamodule=datamodule, weights=weights)


class _Embedder(nn.Module):
    """PatchCore's patch-embedding path (backbone, 3x3 average pool, upsample + concat)."""

    def __init__(self, patchcore_model: nn.Module) -> None:
        super().__init__()
        self.inner = patchcore_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.inner.feature_extractor(x)
        features = {layer: self.inner.feature_pooler(f) for layer, f in features.items()}
        return self.inner.generate_embedding(features)


def features_ir(trained: TrainedPatchcore, image_size: int) -> ov.Model:
    """Convert the trained feature extractor to an OpenVINO model taking uint8 BGR NHWC frames."""
    embedder = _Embedder(trained.model.model).eval()
    example = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        model = ov.convert_model(embedder, example_input=example, input=[1, 3, image_size, image_size])
    model.output(0).get_tensor().set_names({"embedding"})
    return embed_preprocessing(model, IMAGENET_MEAN, IMAGENET_STD)


def memory_bank(trained: TrainedPatchcore):
    """The fitted coreset as a float32 numpy array [M, D]."""
    return trained.model.model.memory_bank.detach().cpu().float().numpy()
