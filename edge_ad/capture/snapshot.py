"""One frame through the station's own source, to aim and focus a camera (``edge-ad snapshot``).

A short burst of frames is read exactly as the station would read them (same source, same camera settings,
software triggers fired one per frame). The last frame is written with the model's region of interest
drawn just outside it, so what the model sees stays untouched; the frame rate of the burst and a focus
measure (variance of the Laplacian of the grey image: higher is sharper, comparable only between frames of
the same scene and lighting) are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ad.capture.poll import IDLE
from edge_ad.capture.sources import open_source
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import CameraError, EdgeAdError, first_line
from edge_ad.types import Frame

__all__ = ["IMAGE_SUFFIXES", "ROI_COLOR", "Snapshot", "bundle_roi", "draw_roi", "focus_measure", "take_snapshot"]

ROI_COLOR = (0, 255, 0)  # BGR green
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class Snapshot:
    """What :func:`take_snapshot` wrote and measured.

    Attributes:
        path: The image written.
        source: The source's name (camera label, folder, device).
        width: Frame width in pixels.
        height: Frame height in pixels.
        frames: Frames read in the burst.
        elapsed_s: Time from the first to the last frame of the burst.
        fps: Frames per second over the burst (intervals / elapsed); None with a single frame.
        focus: Variance of the Laplacian of the grey image (the ROI's part of it when there is a ROI).
        roi: The bundle's ROI (x, y, width, height), None when there is none.
        notes: What the technician should know: no ROI and why, a ROI outside the frame, fewer frames than asked.
    """

    path: Path
    source: str
    width: int
    height: int
    frames: int
    elapsed_s: float
    fps: float | None
    focus: float
    roi: Roi | None
    notes: tuple[str, ...] = ()

    @property
    def focus_region(self) -> str:
        """Where the focus was measured."""
        if self.roi is None:
            return "whole frame"
        x, y, w, h = self.roi
        return f"ROI x={x} y={y} {w}x{h}"


def focus_measure(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: sharp edges give a high value, blur a low one."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _clip(roi: Roi, width: int, height: int) -> Roi | None:
    """The part of ``roi`` inside a width x height frame (as the runtime crops it), None if nothing is."""
    x, y, w, h = roi
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def draw_roi(image: np.ndarray, roi: Roi, color: tuple[int, int, int] = ROI_COLOR) -> np.ndarray:
    """A copy of ``image`` with a frame drawn just outside ``roi`` (the pixels the model sees are left as they are).

    The line is about 1/300 of the image's larger side thick (at least 1 pixel).
    """
    out = image.copy()
    x, y, w, h = roi
    thickness = max(1, round(max(image.shape[:2]) / 300))
    for k in range(1, thickness + 1):
        cv2.rectangle(out, (x - k, y - k), (x + w - 1 + k, y + h - 1 + k), color, 1)
    return out


def bundle_roi(model_path: Path) -> tuple[Roi | None, str | None]:
    """The ROI of the bundle at ``model_path``, or None and why there is none.

    Only the manifest is read (file hashes are not checked: this is for aiming, not for running).
    """
    from edge_ad.bundle import load_bundle

    try:
        bundle = load_bundle(model_path, verify=False)
    except (EdgeAdError, OSError) as exc:
        return None, f"no ROI: {first_line(exc)}"
    roi = bundle.manifest.input.roi
    if roi is None:
        return None, f"no ROI: bundle {bundle.path} uses the whole frame"
    return tuple(int(v) for v in roi), None  # type: ignore[return-value]


def _grab(config: EdgeAdConfig, frames: int, timeout_s: float) -> tuple[list[float], Frame, str]:
    """Read up to ``frames`` frames within ``timeout_s``: their arrival times, the last one, the source name.

    Raises:
        CameraError: The source cannot be opened, fails, or gives no frame within ``timeout_s``.
    """
    camera = config.camera
    software = camera.genicam_trigger == "software"
    source = open_source(camera)
    try:
        arrivals: list[float] = []
        last: Frame | None = None
        if software:  # one trigger per frame; the camera's trigger thread fires them one at a time
            for _ in range(frames):
                source.fire(object(), lambda token: True, lambda token, reason: None)  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout_s
        while len(arrivals) < frames and time.monotonic() < deadline:
            frame = source.read()
            if frame is IDLE or (software and frame is not None and frame.trigger is None):
                continue  # no frame yet, or one taken before our trigger
            if frame is None:  # the end of a folder or video file
                break
            arrivals.append(time.monotonic())
            last = frame
        if last is None:
            raise CameraError(f"no frame from {source.name} in {timeout_s:g} s; {_no_frame_hint(config)}")
        return arrivals, last, source.name
    finally:
        source.close()


def _no_frame_hint(config: EdgeAdConfig) -> str:
    trigger = config.camera.genicam_trigger
    if trigger == "hardware":
        line = (config.camera.genicam.trigger_line if config.camera.genicam else None) or "its trigger line"
        return (
            f"the camera waits for a hardware trigger on {line}: trigger it, or set camera.genicam.trigger: "
            "free_run while aiming"
        )
    if trigger == "software":
        return (
            "the camera took no frame for its software triggers: check camera.genicam.exposure_us and "
            "frame_timeout_s, and that no other application holds it"
        )
    if trigger == "free_run":
        return (
            "check the cable and network (GigE: packet size / jumbo frames, firewall) and that no other "
            "application holds the camera"
        )
    return "check that the source delivers images (folder not empty, device plugged in, stream reachable)"


def take_snapshot(config: EdgeAdConfig, out: Path, frames: int = 10, timeout_s: float = 10.0) -> Snapshot:
    """Read a burst of frames through the configured source and write the last one with the model's ROI.

    Args:
        config: The station config (``camera`` is opened as the station opens it; ``model.path`` gives the ROI).
        out: Image file to write (.png, .jpg, .bmp, .tif); its folder must exist.
        frames: Frames to read (IDLE polls of a triggered camera do not count).
        timeout_s: Longest time to wait for them; fewer frames by then are reported, none is an error.

    Raises:
        CameraError: The source cannot be opened, fails, or gives no frame within ``timeout_s``.
        EdgeAdError: ``out`` cannot be written.
    """
    if frames < 1 or timeout_s <= 0:
        raise EdgeAdError(f"snapshot: --frames ({frames}) must be at least 1 and --timeout ({timeout_s:g}) positive")
    out = Path(out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise EdgeAdError(f"--out {out}: not an image file name; end it in one of {', '.join(IMAGE_SUFFIXES)}")
    if not out.parent.is_dir():
        raise EdgeAdError(f"--out {out}: folder {out.parent} does not exist")
    arrivals, frame, name = _grab(config, frames, timeout_s)
    image = frame.image
    height, width = image.shape[:2]
    notes: list[str] = []
    if len(arrivals) < frames:
        notes.append(f"only {len(arrivals)} of {frames} frames came within {timeout_s:g} s (or the source ended)")
    roi, why = bundle_roi(config.model.path)
    if why:
        notes.append(why)
    measured = image
    if roi is not None:
        inside = _clip(roi, width, height)
        if inside is None:
            notes.append(f"ROI {roi} lies outside the {width}x{height} frame: the model would see nothing")
            roi = None
        else:
            if inside != roi:
                notes.append(f"ROI {roi} reaches outside the {width}x{height} frame: the model sees only {inside}")
            x, y, w, h = inside
            measured = image[y : y + h, x : x + w]
            image = draw_roi(image, inside)
            roi = inside
    focus = focus_measure(measured)
    try:
        written = cv2.imwrite(str(out), image)
    except cv2.error as exc:
        raise EdgeAdError(f"--out {out}: cannot write the image: {first_line(exc)}") from None
    if not written:
        raise EdgeAdError(f"--out {out}: cannot write the image (permissions? disk full?)")
    elapsed = arrivals[-1] - arrivals[0]
    fps = (len(arrivals) - 1) / elapsed if len(arrivals) > 1 and elapsed > 0 else None
    return Snapshot(
        path=out,
        source=name,
        width=width,
        height=height,
        frames=len(arrivals),
        elapsed_s=elapsed,
        fps=fps,
        focus=focus,
        roi=roi,
        notes=tuple(notes),
    )
