"""Technician recalibration section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["RecalibrationConfig"]


class RecalibrationConfig(EdgeAdModel):
    """How ``edge-ad recalibrate`` re-teaches "good" on the device and when it accepts the result."""

    target_false_reject: float = Field(
        0.01, ge=0, lt=1, description="Largest false-reject rate accepted on held-back good frames."
    )
    min_frames: int = Field(20, ge=8, description="Fewest good frames a recalibration accepts.")
    holdback_every: int = Field(
        4, ge=2, description="Every Nth good frame is held back for the acceptance check (never fitted)."
    )
    sigma_k: float | None = Field(
        None, gt=0, description="k for the sigma method; null keeps the bundle's own (default 3)."
    )
    keep_versions: int = Field(5, ge=2, description="Bundle versions kept per model (the active one always).")
    mqtt_command: bool = Field(
        False,
        description=(
            "Accept edge_ad/<station>/cmd/recalibrate. Only honoured when mqtt.username is set "
            "(a broker that authenticates its users)."
        ),
    )
    defects_root: Path | None = Field(
        None,
        description=(
            "Folder under which a cmd/recalibrate 'defects_dir' must lie (relative to it); unset: commands "
            "cannot name a defects folder at all. Keeps a command from reading any folder on the device."
        ),
    )
