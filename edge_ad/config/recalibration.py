"""Technician recalibration section."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["RecalibrationConfig"]


class RecalibrationConfig(EdgeAdModel):
    """How ``edge-ad recalibrate`` re-teaches "good" on the device and when it accepts the result."""

    target_false_reject: float = Field(
        0.01,
        gt=0,
        lt=1,
        description=(
            "Largest false-reject rate accepted on held-back good frames. n held-back frames measure it in "
            "steps of 1/n, so it needs at least 1/target of them (1 %: 100, i.e. 400 good frames at "
            "holdback_every 4)."
        ),
    )
    max_active_false_reject: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Largest share of the held-back 'good' frames the active model may reject. A recalibration after "
            "drift is normal, but when the active model rejects most of them they may be defects. After "
            "checking the parts, a technician on site runs edge-ad recalibrate --parts-checked (that run only)."
        ),
    )
    min_frames: int = Field(20, ge=8, description="Fewest good frames a recalibration accepts.")
    holdback_every: int = Field(
        4, ge=2, description="Every Nth good frame is held back for the acceptance check (never fitted)."
    )
    sigma_k: float | None = Field(
        None, gt=0, description="k for the sigma method; null keeps the bundle's own (default 3)."
    )
    max_collect_mb: float = Field(
        1024,
        gt=0,
        description="Memory a cmd/recalibrate may use for its frames (frames x frame size); more is refused.",
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

    def needed_held_back(self) -> int:
        """Fewest held-back frames whose false-reject rate (steps of 1/n) can show ``target_false_reject``."""
        return math.ceil(1 / self.target_false_reject - 1e-9)  # 1e-9: 1 / (1 / 49) is 49.00000000000001

    def needed_good_frames(self) -> int:
        """Fewest good frames a recalibration accepts: ``min_frames``, and enough held back for the target."""
        return max(self.min_frames, self.holdback_every * self.needed_held_back())
