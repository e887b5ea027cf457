"""Fresh frames for recalibration: from an image folder or from the station's camera."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_ad.capture.sources import open_source
from edge_ad.config import CameraConfig
from edge_ad.datasets.layout import list_images, read_images
from edge_ad.errors import CameraError, DatasetError

__all__ = ["frames_from_camera", "frames_from_folder"]


def frames_from_folder(folder: Path, option: str = "--images") -> list[np.ndarray]:
    """Every image of a folder (name order) as BGR arrays."""
    if not folder.is_dir():
        raise DatasetError(f"{option}: {folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"{option}: {folder} has no images (.png/.jpg/.bmp/.tif)")
    return read_images(paths, option)


def frames_from_camera(camera: CameraConfig, count: int, interval_s: float = 0.0, progress=None) -> list[np.ndarray]:
    """``count`` frames from the configured camera, ``interval_s`` apart (parts move between them).

    Raises:
        CameraError: The camera cannot be opened (busy: a USB camera opens once, so stop the
            daemon first; or gone) or stops delivering.
    """
    try:
        source = open_source(camera)
    except CameraError as exc:
        raise CameraError(
            f"{exc} - if the station daemon holds this camera, stop it first "
            "(systemctl stop edge-ad@<station>) or recalibrate from --images DIR"
        ) from None
    frames = []
    try:
        while len(frames) < count:
            frame = source.read()
            if frame is None:
                raise CameraError(
                    f"camera.source: {source.name} ended after {len(frames)} of {count} frames; "
                    "use a longer recording or fewer frames"
                )
            frames.append(frame.image)
            if progress:
                progress("capture", len(frames))
            if interval_s and len(frames) < count:
                time.sleep(interval_s)
    finally:
        source.close()
    return frames
