"""Frame source section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["GENICAM_SCHEME", "MANAGED_FEATURES", "CameraConfig", "GenicamConfig", "genicam_device"]

GENICAM_SCHEME = "genicam://"
# features edge_ad sets itself, and the key that sets each: ``features`` may not override them
MANAGED_FEATURES = {
    "PixelFormat": "pixel_format",
    "TriggerMode": "trigger",
    "TriggerSource": "trigger",
    "TriggerSelector": "trigger",
    "TriggerActivation": "trigger_activation",
    "TriggerSoftware": "trigger",
    "AcquisitionStart": "trigger",
    "AcquisitionStop": "trigger",
    "GevSCPSPacketSize": "packet_size",
    "GevSCPD": "packet_delay_ns",
}


def genicam_device(source: int | str) -> str | None:
    """The camera a ``genicam://<id>`` source names ("" for the first one found); None for any other source."""
    if isinstance(source, str) and source.startswith(GENICAM_SCHEME):
        return source[len(GENICAM_SCHEME) :].strip("/")
    return None


class GenicamConfig(EdgeAdModel):
    """GigE Vision / USB3 Vision camera features, set through Aravis (GenICam); see docs/cameras.md."""

    exposure_us: float | None = Field(None, gt=0, description="ExposureTime in microseconds; null keeps the camera's.")
    gain_db: float | None = Field(None, description="Gain in dB; null keeps the camera's.")
    pixel_format: Literal["Mono8", "BayerRG8", "BayerBG8", "BayerGR8", "BayerGB8", "RGB8", "BGR8"] | None = Field(
        None, description="PixelFormat; Bayer formats are debayered with OpenCV. null keeps the camera's."
    )
    region: tuple[int, int, int, int] | None = Field(
        None, description="Sensor region [x, y, width, height] in pixels (after binning); null keeps the camera's."
    )
    binning: tuple[int, int] | None = Field(
        None, description="[horizontal, vertical] binning; null keeps the camera's."
    )
    trigger: Literal["free_run", "software", "hardware"] = Field(
        "free_run",
        description="free_run: the camera streams at camera.fps (or its own rate). software: each trigger "
        "(MQTT/OPC UA, service.mode: triggered) fires TriggerSoftware and gets the frame it produced. hardware: "
        "the camera exposes on trigger_line (a PLC or light barrier); every frame is judged.",
    )
    frame_timeout_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="software: a trigger whose frame has not arrived within this many seconds is lost (counted) "
        "and the next one fires; at least exposure plus transfer time.",
    )
    trigger_line: str = Field("Line1", description="hardware: the TriggerSource input line.")
    trigger_activation: str | None = Field(
        "RisingEdge", description="hardware: TriggerActivation (RisingEdge, FallingEdge...); null keeps the camera's."
    )
    features: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="Further GenICam features by name (vendor-specific), set in order after the ones above; "
        "each is checked against the camera's own limits.",
    )
    buffers: int = Field(8, ge=2, le=256, description="Frame buffers in the acquisition pool.")
    packet_size: int | None = Field(
        None,
        ge=576,
        le=16384,
        description="GigE: stream packet size in bytes (9000 with jumbo frames); null "
        "negotiates the largest the path carries.",
    )
    packet_delay_ns: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="GigE: inter-packet delay in nanoseconds (spreads the bandwidth of several cameras); "
        "0 sends at line rate.",
    )
    liveness_timeout_s: float = Field(
        3.0, gt=0, le=60, description="A camera that answers no register read for this long is offline."
    )

    @model_validator(mode="after")
    def _features_do_not_override_the_keys_above(self) -> GenicamConfig:
        for feature in self.features:
            owner = MANAGED_FEATURES.get(feature)
            if owner is not None:
                raise ValueError(
                    f"features.{feature}: edge_ad sets {feature} from camera.genicam.{owner}; set it there"
                )
        return self


class CameraConfig(EdgeAdModel):
    """Where frames come from and how fast."""

    source: int | str = Field(
        title="Source",
        description=(
            "USB/V4L2 device index (0) or path (/dev/video0), RTSP/HTTP URL, video file, "
            "a folder of images replayed in name order, or genicam://<id> for a GigE Vision / USB3 Vision camera "
            "through Aravis, <id> being its device id (Vendor-Serial, as 'edge-ad cameras' lists it), user-defined "
            "name, MAC or IP address (genicam:// alone: the first one found; genicam extra)."
        ),
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=240,
        title="Frame rate cap",
        description="Maximum frames per second scored; null reads as fast as the source delivers. GenICam "
        "free run: the camera's AcquisitionFrameRate.",
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
    genicam: GenicamConfig | None = Field(
        None, description="GenICam camera features and trigger; only with a genicam:// source."
    )

    @model_validator(mode="after")
    def _genicam_section_needs_a_genicam_source(self) -> CameraConfig:
        if self.genicam is not None and genicam_device(self.source) is None:
            raise ValueError(
                f"camera.genicam is set but camera.source {self.source!r} is no GenICam camera; "
                "use camera.source: genicam://<camera id or IP> or remove the genicam section"
            )
        return self

    @property
    def genicam_trigger(self) -> str | None:
        """The GenICam trigger mode (free_run/software/hardware) when the source is a GenICam camera."""
        if genicam_device(self.source) is None:
            return None
        return (self.genicam or GenicamConfig()).trigger
