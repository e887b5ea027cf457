"""What every family hands over: a :class:`Trained` model that becomes one OpenVINO scoring graph.

The contract: an ``ov.Model`` taking one uint8 BGR NHWC frame and returning ``pred_score [1]`` (raw,
un-normalised) and ``anomaly_map`` — so the runtime does not care which family made the bundle. A
:class:`Family` says how to build, train and describe one model type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openvino as ov
import torch
from torch import nn

from edge_ad.bundle import ModelSpec
from edge_ad.export.recipe import ExportRecipe
from edge_ad.inference.patchcore_graph import MAP_OUTPUT, SCORE_OUTPUT
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, embed_preprocessing

__all__ = [
    "BACKBONE_MARKERS",
    "Family",
    "RawOutputs",
    "Trained",
    "ancestors",
    "convert",
    "feature_extractor",
    "find_output",
    "name_outputs",
]

BACKBONE_MARKERS = (".feature_extractor", ".teacher_model", ".student_model")


@dataclass
class Trained:
    """A fitted anomalib model and how to turn it into bundle files."""

    recipe: ExportRecipe
    module: nn.Module  # the anomalib Lightning module
    engine: object  # anomalib.engine.Engine (kept for Engine.predict comparisons)
    weights: Path
    params: dict = field(default_factory=dict)
    fit_seconds: float = 0.0

    @property
    def size(self) -> int:
        """Square input size."""
        return self.recipe.model.image_size

    def spec(self) -> ModelSpec:
        """Manifest description of the model."""
        m = self.recipe.model
        return ModelSpec(
            type=m.type,
            backbone=m.backbone,
            layers=m.resolved_layers(),
            weights=self.weights.name,
            params=self.params,
        )

    # Whether the recipe's int8.keep_fp32 (lite-backbone early layers, embedding pool) applies.
    honours_keep_fp32 = True

    @property
    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(mean, std) on the 0..1 scale applied before the network."""
        return IMAGENET_MEAN, IMAGENET_STD

    def scoring_ir(self) -> ov.Model:
        """FP32 scoring model (uint8 frame in, raw score and map out)."""
        wrapper = RawOutputs(self.module.model).eval()
        return name_outputs(convert(wrapper, self.size, *self.normalization))

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Ops that must stay FP32: everything that is not backbone (the anomaly head).

        The backbone is every op named after the anomalib feature-extractor modules plus all
        their ancestors (fused Conv+BN ops lose the module path in their names). The head's own
        Gaussian-blur convolution is thereby excluded from quantization too.
        """
        backbone: set[str] = set()
        for op in scoring.get_ordered_ops():
            if any(marker in op.get_friendly_name() for marker in BACKBONE_MARKERS):
                backbone |= ancestors(op)
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in backbone]

    def fp32_types(self) -> list[str]:
        """Op types kept FP32 besides :meth:`head_ops`."""
        return []

    def write_extras(self, staging: Path, fp32: ov.Model, int8: ov.Model | None) -> None:
        """Extra bundle files (PatchCore: memory bank and feature IRs)."""


class RawOutputs(nn.Module):
    """anomalib torch model in eval mode -> (pred_score, anomaly_map), no post-processing."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pred_score ``[1]``, anomaly_map ``[1, H, W]``)."""
        out = self.inner(x)
        return out.pred_score.reshape(1), out.anomaly_map.reshape(1, *out.anomaly_map.shape[-2:])


def convert(
    module: nn.Module,
    size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> ov.Model:
    """Trace ``module`` at ``size`` px and embed the runtime's preprocessing (uint8 BGR NHWC in)."""
    example = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[1, 3, size, size])
    return embed_preprocessing(model, mean, std)


def name_outputs(model: ov.Model) -> ov.Model:
    """Name the two outputs as the bundle expects them."""
    model.output(0).get_tensor().set_names({SCORE_OUTPUT})
    model.output(1).get_tensor().set_names({MAP_OUTPUT})
    return model


def find_output(model: ov.Model, name: str) -> ov.Output:
    """The output port carrying tensor ``name``, anywhere in ``model``."""
    for op in model.get_ordered_ops():
        for out in op.outputs():
            if name in out.get_names():
                return out
    raise ValueError(f"no tensor named {name!r} in the model")


def ancestors(node: ov.Node) -> set[str]:
    """Friendly names of ``node`` and every op it depends on."""
    seen: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get_friendly_name() in seen:
            continue
        seen.add(current.get_friendly_name())
        stack.extend(inp.get_source_output().get_node() for inp in current.inputs())
    return seen


def feature_extractor(module: nn.Module) -> nn.Module:
    """The timm backbone inside an anomalib module built on ``TimmFeatureExtractor`` (PatchCore, PaDiM)."""
    return module.model.feature_extractor.feature_extractor


def _no_params(recipe: ExportRecipe, module: nn.Module) -> dict:
    return {}


@dataclass(frozen=True)
class Family:
    """How one model type is built, trained and described.

    Attributes:
        build: The Lightning module for a recipe (``recipe.model.image_size`` is set).
        trained: The :class:`Trained` subclass that turns it into bundle files.
        epochs: Trained for ``recipe.model.epochs`` epochs (else anomalib's own one-pass fit).
        backbone: Where the backbone's ImageNet weights are loaded; None when the family has no such backbone.
        timm_layers: ``recipe.model.layers`` are timm feature layers of ``recipe.model.backbone`` (checked early).
        train_batch_size: Fixed training batch size (None: ``recipe.model.resolved_batch_size()``).
        params: Manifest ``model.params`` beyond image size and seed.
    """

    build: Callable[[ExportRecipe], nn.Module]
    trained: type[Trained] = Trained
    epochs: bool = False
    backbone: Callable[[nn.Module], nn.Module] | None = feature_extractor
    timm_layers: bool = True
    train_batch_size: int | None = None
    params: Callable[[ExportRecipe, nn.Module], dict] = field(default=_no_params)
