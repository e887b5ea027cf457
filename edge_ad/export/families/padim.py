"""PaDiM: anomalib's module as it is (per-patch Gaussians on random feature channels)."""

from __future__ import annotations

from torch import nn

from edge_ad.export.families.base import Family
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe

__all__ = ["FAMILY"]


def _build(recipe: ExportRecipe) -> nn.Module:
    from anomalib.models import Padim

    m = recipe.model
    return Padim(
        backbone=m.backbone,
        layers=m.resolved_layers(),
        pre_trained=False,
        n_features=m.n_features,
        pre_processor=pre_processor(recipe),
        visualizer=False,
    )


FAMILY = Family(build=_build)
