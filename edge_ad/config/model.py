"""Model bundle section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["ModelConfig"]


class ModelConfig(EdgeAdModel):
    """Which bundle to load and where to run it."""

    path: Path = Field(
        title="Bundle path",
        description=(
            "A bundle version directory (models/<name>/<version>) or a model directory "
            "(models/<name>), in which case its 'active' link or newest version is used."
        ),
    )
    variant: Literal["auto", "fp32", "int8", "bf16", "f16"] = Field(
        "auto",
        description=(
            "Which variant runs: an IR of the bundle at an explicit precision. fp32 runs every layer in f32; "
            "int8 runs the quantized IR with the rest in f32; bf16 (CPUs with native bf16/AMX) and f16 (GPUs) "
            "run the FP32 IR at reduced precision. Every variant runs only if commissioning accepted it on "
            "this device (docs/operations.md); a refused one runs fp32 with an alarm on status. auto runs "
            "the fastest accepted variant, decided once per bundle version and device and kept across restarts."
        ),
    )
    device: str = Field(
        "CPU",
        pattern=r"^(CPU|GPU(\.\d+)?|NPU|AUTO(:[A-Z0-9.,]+)?)$",
        description=(
            "OpenVINO device: CPU, GPU, GPU.0 or NPU; an absent device falls back to CPU. AUTO (written by "
            "earlier installs) runs on CPU with a note on status: it would let OpenVINO pick and switch devices "
            "at run time, which changes scores."
        ),
    )
    min_agreement: float = Field(
        1.0,
        ge=0.5,
        le=1,
        description=(
            "Commissioning: share of acceptance-set verdicts a variant must share with FP32 to be allowed "
            "(1.0: every one)."
        ),
    )
    infer_requests: int = Field(
        1,
        ge=1,
        le=8,
        description=(
            "Frames in flight (OpenVINO AsyncInferQueue). 1 gives the lowest latency per frame; 2 or more "
            "pipeline frames across CPU streams for throughput on fast lines (triggered mode always answers at once)."
        ),
    )
    selftest_tolerance: float = Field(
        0.02, gt=0, le=1, description="Relative deviation allowed when golden images are re-scored at startup."
    )
