"""Daemon section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["DebounceConfig", "DriftConfig", "ServiceConfig"]


class DebounceConfig(EdgeAdModel):
    """Report NG only when n of the last m frames scored NG."""

    n: int = Field(ge=1, description="NG frames needed...")
    m: int = Field(ge=1, description="...among this many most recent frames.")

    @model_validator(mode="after")
    def _n_le_m(self) -> DebounceConfig:
        if self.n > self.m:
            raise ValueError(f"n ({self.n}) must not exceed m ({self.m})")
        return self


class DriftConfig(EdgeAdModel):
    """Drift alarm on the status topic."""

    window: int = Field(200, ge=5, description="OK verdicts in the rolling median.")
    fraction: float = Field(
        0.8, gt=0, lt=1, description="Alarm when the median OK score exceeds this fraction of the threshold."
    )


class ServiceConfig(EdgeAdModel):
    """Process-level settings."""

    state_dir: Path = Field(
        Path("/var/lib/edge-ad"),
        description="Writable directory for the OpenVINO compile cache and daemon state.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")
    mode: Literal["free_run", "triggered"] = Field(
        "free_run",
        description=(
            "free_run scores frames continuously (a trigger is answered ERROR); triggered scores the first frame "
            "captured after each message on <prefix>/<station>/trigger and answers with its id."
        ),
    )
    every_nth: int = Field(1, ge=1, description="free_run: score every Nth frame (1 = all).")
    trigger_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="triggered: a trigger with no frame captured within this many seconds expires, answered ERROR "
        "(a later frame would show another part); counted in stats.triggers.expired.",
    )
    debounce: DebounceConfig | None = Field(None, description="Optional NG debounce; null reports every raw verdict.")
    drift: DriftConfig | None = Field(
        default_factory=DriftConfig, description="Drift alarm settings; null disables it."
    )
    stats_interval_s: float = Field(
        10.0, gt=0, description="Seconds between retained stats messages (fps, latency, NG rate, ...)."
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop cleanly after this many frames (demos and tests); null runs forever."
    )
