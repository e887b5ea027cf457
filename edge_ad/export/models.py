"""Training: fit a recipe's model family on the good images, offline, and hand over a :class:`Trained`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from edge_ad.datasets.layout import Category
from edge_ad.errors import ExportError, first_line
from edge_ad.export.families import family
from edge_ad.export.families.base import Trained
from edge_ad.export.families.data import datamodule
from edge_ad.export.recipe import ExportRecipe
from edge_ad.export.weights import load_backbone_weights, packaged_weights

__all__ = ["Trained", "check_layers", "train"]

logger = logging.getLogger(__name__)


def check_layers(backbone: str, layers: list[str]) -> None:
    """Fail early, in one line, on a backbone timm does not know or a layer it cannot tap.

    anomalib only warns about such a layer and then fails deep inside training with a KeyError.
    """
    import timm

    try:
        model = timm.create_model(backbone, pretrained=False, features_only=True, exportable=True)
    except RuntimeError as exc:
        hint = "use a timm model name such as tf_efficientnet_lite0"
        raise ExportError(f"model.backbone: {first_line(exc)}; {hint}") from None
    available = [info["module"] for info in model.feature_info.info]
    unknown = [layer for layer in layers if layer not in available]
    if unknown:
        raise ExportError(
            f"model.layers: {', '.join(unknown)} not a feature layer of {backbone}; choose from {', '.join(available)}"
        )


def train(category: Category, recipe: ExportRecipe, workdir: Path) -> Trained:
    """Fit the recipe's model on the category's good training images, offline.

    The backbone's ImageNet weights come from ``recipe.model.weights`` or the installed weights
    package; anomalib is never allowed to download anything.
    """
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    kind = family(recipe.model.type)
    if recipe.model.image_size is None:
        raise ValueError("train() needs model.image_size; export_bundle chooses it when the recipe does not")
    if kind.timm_layers:  # before seeding: building timm's model draws from the RNG
        check_layers(recipe.model.backbone, recipe.model.resolved_layers())
    seed_everything(recipe.seed, workers=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    weights = recipe.model.weights or packaged_weights(recipe.model.backbone)
    module = kind.build(recipe)
    if kind.backbone is not None:
        loaded = load_backbone_weights(kind.backbone(module), weights)
        logger.info("backbone %s: %d tensors from %s", recipe.model.backbone, loaded, weights)
    # anomalib validates after every epoch; the export only needs the trained model's state once, at the end
    # (EfficientAD's map quantiles, post-processing statistics): a validation pass per epoch only costs time
    epochs = recipe.model.epochs
    extra = {"max_epochs": epochs, "check_val_every_n_epoch": epochs, "num_sanity_val_steps": 0} if kind.epochs else {}
    engine = Engine(
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=workdir,
        enable_progress_bar=kind.epochs,
        enable_model_summary=False,
        **extra,
    )
    started = time.perf_counter()
    engine.fit(model=module, datamodule=datamodule(category, recipe, kind.train_batch_size))
    fit_seconds = time.perf_counter() - started
    params = {"image_size": recipe.model.image_size, "seed": recipe.seed, **kind.params(recipe, module)}
    return kind.trained(
        recipe=recipe,
        module=module,
        engine=engine,
        weights=Path(weights),
        params=params,
        fit_seconds=fit_seconds,
    )
