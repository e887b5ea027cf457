"""STFPM: anomalib's student-teacher feature pyramid, its teacher built offline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from edge_ad.export.families.base import Family
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY"]


def _build(recipe: ExportRecipe) -> nn.Module:
    from anomalib.models import Stfpm

    m = recipe.model
    with _offline_stfpm_teacher():
        return Stfpm(
            backbone=m.backbone,
            layers=m.resolved_layers(),
            pre_processor=pre_processor(recipe),
            visualizer=False,
        )


@contextlib.contextmanager
def _offline_stfpm_teacher() -> Iterator[None]:
    """Anomalib's STFPM always builds its teacher with ``pre_trained=True`` (a hub download).

    Build it without weights instead; ``train`` then loads the local ImageNet weights.
    """
    from anomalib.models.image.stfpm import torch_model

    original = torch_model.TimmFeatureExtractor
    torch_model.TimmFeatureExtractor = lambda *args, **kwargs: original(*args, **{**kwargs, "pre_trained": False})
    try:
        yield
    finally:
        torch_model.TimmFeatureExtractor = original


def _teacher(module: nn.Module) -> nn.Module:
    return module.model.teacher_model.feature_extractor  # only the teacher is pretrained


FAMILY = Family(
    build=_build, epochs=True, backbone=_teacher, params=lambda recipe, module: {"epochs": recipe.model.epochs}
)
