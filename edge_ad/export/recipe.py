"""Export recipe: everything that determines a bundle, as one validated YAML (``calibration/*.yaml``).

Torch-free (pydantic only) so recipes can be checked anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_ad.bundle.manifest import ModelType
from edge_ad.config.base import EdgeAdModel
from edge_ad.config.loader import read_yaml_model
from edge_ad.export.model_choice import AUTO_CANDIDATES

__all__ = ["ExportRecipe", "Int8Options", "ModelOptions", "ThresholdOptions", "load_recipe"]

DEFAULT_LAYERS = {
    # PatchCore: blocks.2 alone (40-d patches at stride 8) beat blocks.2 + blocks.4 (152-d) on 4 of 5
    # datasets at 2-3x the speed (BENCHMARKS.md "Which layers"); a heavier layer mix is a recipe away.
    "patchcore": ["blocks.2"],
    "padim": ["blocks.1", "blocks.2", "blocks.4"],
    "stfpm": ["blocks.1", "blocks.2", "blocks.4"],
    "efficientad": [],  # its PDN teacher is distilled from the backbone (see teacher.py)
    # strides 4, 8, 16: anomalib's ResNet layer1-3. blocks.3 is no timm feature layer (those are blocks.0, 1, 2,
    # 4, 6): these families tap lite0 themselves (export/families/lite0.py) and check the names there
    "fastflow": ["blocks.1", "blocks.2", "blocks.3"],
    "reverse_distillation": ["blocks.1", "blocks.2", "blocks.3"],
    "autoencoder": [],  # pixels in, pixels out: no backbone
    "feature_ae": ["blocks.1", "blocks.2", "blocks.3"],  # DFR: several layers resized to one grid
    "global_knn": ["blocks.6"],  # one pooled vector per image from the last block
}
# Training batch size when the recipe names none: the families trained by gradient on a few dozen images
# need more than 2-3 optimizer steps per epoch.
DEFAULT_BATCH_SIZE = {"fastflow": 4, "reverse_distillation": 4, "autoencoder": 4, "feature_ae": 4}
# The threshold method when the recipe names none: the pixel autoencoder uses mean + 3 sigma of the good
# scores, as the lecture it comes from does; the others the best F1 on the validation split.
DEFAULT_THRESHOLD = {"autoencoder": "sigma"}


# INT8 gate defaults (image-AUROC points / 100): PatchCore-like models may lose at most 0.3 point;
# EfficientAD 1 point, because its FP32 is several times slower on a CPU (BENCHMARKS.md).
INT8_DEFAULT_BUDGET = {"default": 0.003, "efficientad": 0.01}


class ModelOptions(EdgeAdModel):
    """Model family, backbone and training knobs."""

    type: ModelType | Literal["auto"] = Field(
        "patchcore",
        description="Anomaly model family; auto: fit each of auto_candidates and keep the best validation AUROC "
        "within auto_latency_ms (the report shows every candidate).",
    )
    auto_candidates: list[ModelType] = Field(
        list(AUTO_CANDIDATES),
        min_length=1,
        description="type auto: the families tried (default: those that fit without training epochs).",
    )
    auto_latency_ms: float | None = Field(
        20.0,
        gt=0,
        description="type auto: largest FP32 p50 single-frame latency (ms, measured on the export machine) a "
        "candidate may have to be chosen; null: no budget.",
    )
    backbone: str = Field("tf_efficientnet_lite0", description="timm backbone name.")
    weights: Path | None = Field(
        None, description="Backbone ImageNet weights .pth; default: the packaged lite0 weights."
    )
    layers: list[str] | None = Field(None, min_length=1, description="Backbone layers; default per model type.")
    image_size: int | None = Field(
        None,
        ge=32,
        le=1024,
        description="Square model input size in pixels; unset: export tries 128, 192 and 256 (up to the images' "
        "short side, and that side if smaller) and keeps the smallest within 0.005 validation AUROC of the best.",
    )
    coreset_ratio: float = Field(0.1, gt=0, le=1, description="PatchCore: fraction of patches kept in the memory bank.")
    coreset: Literal["greedy", "fast", "anomalib"] = Field(
        "greedy",
        description=(
            "PatchCore coreset: 'greedy' is k-center greedy itself, the rows anomalib's algorithm picks, computed "
            "in numpy rounds (default); 'fast' is the batched approximation (faster, measurably less accurate on "
            "some data, BENCHMARKS.md); 'anomalib' runs anomalib's own (reference, slow)."
        ),
    )
    num_neighbors: int = Field(9, ge=1, description="PatchCore: support set size for score re-weighting.")
    coarse_fraction: float | None = Field(
        0.1,
        gt=0,
        lt=1,
        description="PatchCore fast path: compare every patch with this fraction of the memory bank first "
        "(a k-center subset), then only the exact_patches worst with all of it. Default 0.1: at 256 px "
        "14-17 -> 6-7 ms, AUROC -0.5 to +0.9 point vs exact over 5 datasets (BENCHMARKS.md). "
        "null: exact search of every patch.",
    )
    exact_patches: int = Field(64, ge=1, description="PatchCore fast path: patches searched against the whole bank.")
    n_features: int = Field(100, ge=1, description="PaDiM: randomly selected feature channels kept.")
    epochs: int = Field(
        20,
        ge=1,
        description="Training epochs of the families trained by gradient: STFPM, EfficientAD, FastFlow, reverse "
        "distillation, autoencoder, feature_ae.",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Training batch size; default per type: 4 for FastFlow, reverse distillation and the two "
        "autoencoders (more optimizer steps on a few dozen good images: FastFlow reached validation AUROC 0.74 at "
        "16 and 1.0 at 4 on the test data), 16 for the others; EfficientAD always trains with 1.",
    )
    efficientad_size: Literal["small", "medium"] = Field("small", description="EfficientAD: PDN size.")
    teacher: Path | None = Field(
        None,
        description=(
            "EfficientAD: teacher file from 'edge-ad distill-teacher'; default the cached one (distilled on first use)."
        ),
    )
    learning_rate: float = Field(
        5e-4,
        gt=0,
        le=0.1,
        description="EfficientAD only: Adam learning rate (anomalib's 1e-4 is tuned for 70 000 steps; "
        "5e-4 reaches >= 0.95 AUROC in a few hundred, see BENCHMARKS.md).",
    )
    penalty_dir: Path | None = Field(
        None, description="EfficientAD: folder of varied photos for the penalty loss; default scikit-image's photos."
    )

    @model_validator(mode="after")
    def _auto_takes_each_familys_layers(self) -> ModelOptions:
        if self.type == "auto" and self.layers is not None:
            raise ValueError("type auto uses each candidate's default layers; remove layers or name a type")
        return self

    @model_validator(mode="after")
    def _efficientad_size(self) -> ModelOptions:
        size = self.image_size
        if self.type == "efficientad" and size is not None and (size % 32 or size < 128):
            raise ValueError(f"EfficientAD needs image_size a multiple of 32 and >= 128, got {size}")
        return self

    def resolved_batch_size(self) -> int:
        """Training batch size (the explicit one or the model type's default)."""
        return self.batch_size or DEFAULT_BATCH_SIZE.get(self.type, 16)

    def resolved_layers(self) -> list[str]:
        """Layers to use (the explicit list or the model type's default)."""
        if self.type == "auto":
            raise ValueError("type auto has no layers of its own: resolve it to a candidate first")
        return list(self.layers or DEFAULT_LAYERS[self.type])


class ThresholdOptions(EdgeAdModel):
    """How the decision threshold is chosen on the validation split."""

    method: Literal["f1", "sigma", "percentile"] | None = Field(
        None, description="f1, sigma or percentile; default per model type (autoencoder: sigma, others: f1)."
    )
    k: float = Field(3.0, gt=0, description="sigma: threshold = mean + k * std of good scores.")
    percentile: float = Field(99.5, gt=0, le=100, description="percentile: of good scores.")


class Int8Options(EdgeAdModel):
    """NNCF INT8 quantization and its accuracy gate."""

    mode: Literal["ptq", "aware", "none"] = Field("ptq", description="post-training, accuracy-aware, or no INT8.")
    max_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest allowed image-AUROC drop on the validation split; default 0.003 "
        "(0.01 for EfficientAD, whose INT8 is what makes it fast enough on a CPU).",
    )
    calibration_dir: Path | None = Field(
        None, description="Folder of good images for NNCF statistics; default the category's train/good."
    )
    calibration_images: int = Field(300, ge=1, description="Calibration images used (at most, in name order).")
    keep_fp32: list[Literal["early_layers", "embedding_pool"]] = Field(
        ["early_layers", "embedding_pool"],
        description=(
            "Layers left in FP32: convolutions at stride <= 4 and PatchCore's embedding pool "
            "(quantizing them costs most of the accuracy on lite0 backbones)."
        ),
    )


class SigningOptions(EdgeAdModel):
    """Who signs the bundle (``manifest.sig``): a private key from ``edge-ad keys new``."""

    key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs the manifest; unset: the bundle is not signed."
    )


class ExportRecipe(EdgeAdModel):
    """One product/station: data, model, threshold and INT8 budget."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Bundle name.")
    data: Path = Field(description="MVTec-style category directory (train/good, test/good, test/<defect>).")
    out: Path = Field(Path("models"), description="Models root the bundle is installed under.")
    roi: tuple[int, int, int, int] | None = Field(
        None, description="Crop x, y, width, height (pixels of the camera frame) before resizing."
    )
    model: ModelOptions = Field(default_factory=ModelOptions)
    threshold: ThresholdOptions = Field(default_factory=ThresholdOptions)
    int8: Int8Options = Field(default_factory=Int8Options)
    signing: SigningOptions = Field(default_factory=SigningOptions)
    seed: int = Field(0, ge=0)

    @property
    def threshold_method(self) -> Literal["f1", "sigma", "percentile"]:
        """``threshold.method``, or the model type's default."""
        return self.threshold.method or DEFAULT_THRESHOLD.get(self.model.type, "f1")  # type: ignore[return-value]

    @property
    def int8_budget(self) -> float:
        """The INT8 gate's largest allowed validation AUROC drop (``int8.max_drop`` or the model's default)."""
        if self.int8.max_drop is not None:
            return self.int8.max_drop
        return INT8_DEFAULT_BUDGET.get(self.model.type, INT8_DEFAULT_BUDGET["default"])


def load_recipe(path: str | Path) -> ExportRecipe:
    """Read a recipe YAML; relative paths are resolved against its directory.

    Raises:
        ConfigError: Missing file, bad YAML, or validation errors (with key paths).
    """
    path = Path(path)
    recipe = read_yaml_model(path, ExportRecipe, "recipe", "check the --recipe path")
    base = path.parent.resolve()

    def resolve(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    int8 = recipe.int8
    if int8.calibration_dir is not None:
        int8 = int8.model_copy(update={"calibration_dir": resolve(int8.calibration_dir) or int8.calibration_dir})
    model = recipe.model
    model = model.model_copy(
        update={
            key: resolve(getattr(model, key)) or getattr(model, key) for key in ("weights", "teacher", "penalty_dir")
        }
    )
    return recipe.model_copy(
        update={
            "data": resolve(recipe.data) or recipe.data,
            "out": resolve(recipe.out) or recipe.out,
            "model": model,
            "signing": SigningOptions(key=resolve(recipe.signing.key) or recipe.signing.key),
        }
    )
