"""NG evidence section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["EvidenceConfig"]


class EvidenceConfig(EdgeAdModel):
    """Where and how much NG evidence (frame + heatmap JPEGs) is kept."""

    enabled: bool = Field(True, description="Save the frame and a heatmap overlay of every NG verdict.")
    dir: Path | None = Field(None, description="Evidence directory; default <service.state_dir>/evidence.")
    max_files: int = Field(2000, ge=2, description="Most JPEG files kept; the oldest are removed first.")
    max_mb: float = Field(500.0, gt=0, description="Most megabytes kept; the oldest files are removed first.")
    min_free_mb: float = Field(
        200.0,
        ge=0,
        description="Free space kept on the evidence filesystem: the oldest evidence is removed to keep it, "
        "and no evidence is written (alarm on status) when it cannot be kept. 0 disables the reserve.",
    )
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of saved evidence.")
