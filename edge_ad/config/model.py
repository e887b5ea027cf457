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
    variant: Literal["auto", "int8", "fp32"] = Field(
        "auto",
        description=(
            "Which IR of the bundle to run. auto times both on this device at startup and runs int8 only "
            "when it is at least 5 % faster (INT8 does not pay for every backbone and CPU); int8 falls back "
            "to fp32 if the bundle has no accepted INT8 variant."
        ),
    )
    device: str = Field(
        "CPU",
        pattern=r"^(CPU|GPU(\.\d+)?|NPU|AUTO(:[A-Z0-9.,]+)?)$",
        description="OpenVINO device: CPU, GPU, GPU.0, NPU or AUTO; an absent device falls back to CPU.",
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
