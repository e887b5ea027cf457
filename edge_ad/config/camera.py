"""Frame source section."""

from __future__ import annotations

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["CameraConfig"]


class CameraConfig(EdgeAdModel):
    """Where frames come from and how fast."""

    source: int | str = Field(
        title="Source",
        description=(
            "USB/V4L2 device index (0) or path (/dev/video0), RTSP/HTTP URL, video file, "
            "or a folder of images replayed in name order."
        ),
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=240,
        title="Frame rate cap",
        description="Maximum frames per second scored; null reads as fast as the source delivers.",
    )
    loop: bool = Field(
        False,
        title="Loop replay",
        description="Restart a video file or image folder at its end instead of stopping.",
    )
    open_timeout_s: float = Field(
        10.0, gt=0, title="Open timeout", description="Seconds to wait for the source to open."
    )
    stall_timeout_s: float = Field(
        10.0, gt=0, description="No frame for this long marks the camera offline and triggers a reconnect."
    )
    reconnect_max_s: float = Field(30.0, ge=1, description="Longest wait between reconnect attempts (backoff cap).")
    width: int | None = Field(None, ge=1, description="Requested capture width (devices only).")
    height: int | None = Field(None, ge=1, description="Requested capture height (devices only).")
