"""Bundle manifest: what a model bundle contains and how to run and judge it.

The manifest is the only format shared between export (workstation) and runtime (device).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ACCEPTANCE_FILE",
    "MANIFEST_NAME",
    "MODEL_TYPES",
    "RECALIBRATION_REPORT",
    "SIGNATURE_NAME",
    "AcceptanceSpec",
    "FileEntry",
    "GoldenImage",
    "InputSpec",
    "Manifest",
    "ModelSpec",
    "ModelType",
    "Threshold",
    "Variant",
    "recalibration_root",
]

MANIFEST_NAME = "manifest.json"
ModelType = Literal[
    "patchcore",
    "padim",
    "stfpm",
    "efficientad",
    "fastflow",
    "reverse_distillation",
    "autoencoder",
    "feature_ae",
    "global_knn",
]
MODEL_TYPES: tuple[str, ...] = ModelType.__args__  # the families ``edge_ad.export.families`` can train
SIGNATURE_NAME = "manifest.sig"  # Ed25519 signature of the manifest (edge_ad.bundle.signing)
ACCEPTANCE_FILE = "acceptance.npz"
RECALIBRATION_REPORT = "report/recalibration.html"  # what a recalibration measured, written into the new version


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class FileEntry(_Strict):
    """Integrity record of one bundle file."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class InputSpec(_Strict):
    """What the IR expects; the runtime resizes frames to height x width and feeds uint8 BGR NHWC."""

    height: int = Field(ge=8)
    width: int = Field(ge=8)
    layout: Literal["NHWC"] = "NHWC"
    element_type: Literal["u8"] = "u8"
    color: Literal["BGR"] = "BGR"
    resize: Literal["area_or_linear"] = "area_or_linear"
    normalization: dict[str, list[float]] = Field(
        description="mean/std (0..1 scale, RGB) applied inside the IR after the BGR->RGB swap"
    )
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x, y, width, height cropped from the camera frame before resizing"
    )


class Threshold(_Strict):
    """Decision threshold on the raw score, and how it was chosen."""

    value: float
    method: Literal["f1", "sigma", "percentile", "manual"]
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number")
        return v


class Variant(_Strict):
    """One runnable IR of the bundle (fp32 or int8) with its own threshold and metrics."""

    xml: str
    bin: str
    precision: Literal["FP32", "INT8"]
    threshold: Threshold
    metrics: dict[str, float] = Field(default_factory=dict)
    status: Literal["ok", "rejected"] = "ok"


class ModelSpec(_Strict):
    """The trained model behind the IR."""

    type: ModelType
    backbone: str
    layers: list[str]
    weights: str
    params: dict[str, Any] = Field(default_factory=dict)


class GoldenImage(_Strict):
    """An image shipped in the bundle with the raw score each variant gave it at export (startup self-test)."""

    file: str
    label: Literal[0, 1]
    scores: dict[Literal["fp32", "int8"], float]


class AcceptanceSpec(_Strict):
    """The acceptance set: labelled images at model resolution with their FP32 scores.

    Commissioning scores it with every candidate variant on the device; a variant runs only if its
    verdicts agree with FP32 and its AUROC is within ``max_auroc_drop`` of FP32's on this set.
    """

    file: str = ACCEPTANCE_FILE
    images: int = Field(ge=2)
    good: int = Field(ge=1)
    defects: int = Field(ge=1)
    max_auroc_drop: float = Field(ge=0, le=1, description="The recipe's INT8 budget, applied to every variant.")
    source: str = Field("validation", description="Which images the set was taken from.")


class Manifest(_Strict):
    """``manifest.json`` of a bundle version directory."""

    format: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(pattern=r"^[0-9]+$")
    created: str
    model: ModelSpec
    input: InputSpec
    score_space: Literal["raw"] = "raw"
    outputs: dict[str, str]
    variants: dict[Literal["fp32", "int8"], Variant]
    default_variant: Literal["fp32", "int8"]
    files: dict[str, FileEntry] = Field(description="Every file of the version by relative POSIX path (no '..').")
    metrics: dict[str, Any] = Field(default_factory=dict)
    golden: list[GoldenImage] = Field(default_factory=list)
    acceptance: AcceptanceSpec | None = Field(None, description="Absent in bundles exported before commissioning.")
    dataset: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    parent: str | None = Field(None, description="Version this one was recalibrated from.")
    recalibration: dict[str, Any] = Field(default_factory=dict, description="What the recalibration used and measured.")

    @field_validator("files")
    @classmethod
    def _inside(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in files:
            parts = name.split("/")
            if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"file name {name!r} is not a plain relative path inside the version")
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                raise ValueError(f"{name} cannot list itself")
        return files


def recalibration_root(manifest: Manifest) -> str | None:
    """The version a trusted key signed that a recalibrated version descends from (its parent in old records)."""
    root = manifest.recalibration.get("root")
    return str(root) if isinstance(root, str | int) and str(root).isdigit() else manifest.parent
