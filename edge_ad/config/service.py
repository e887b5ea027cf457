"""Daemon section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["ServiceConfig"]


class ServiceConfig(EdgeAdModel):
    """Process-level settings."""

    state_dir: Path = Field(
        Path("/var/lib/edge-ad"),
        description="Writable directory for the OpenVINO compile cache and daemon state.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")
    stats_interval_s: float = Field(
        10.0, gt=0, description="Seconds between retained stats messages (fps, latency, NG rate, ...)."
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop cleanly after this many frames (demos and tests); null runs forever."
    )
