"""Frame sources: OpenCV devices, streams and video files, image-folder replay, GenICam cameras (Aravis)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

import cv2

from edge_ad.capture.poll import Idle
from edge_ad.config import CameraConfig
from edge_ad.config.camera import genicam_device
from edge_ad.datasets.layout import list_images
from edge_ad.errors import CameraError
from edge_ad.guard import RateLimitedLog
from edge_ad.types import Frame

__all__ = ["FolderSource", "FrameSource", "OpenCVSource", "Pacer", "open_source"]

logger = logging.getLogger(__name__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our errors name the device instead


class FrameSource(Protocol):
    """Anything that yields frames; ``read`` returns None when a finite source is exhausted.

    ``live`` sources (cameras, streams) run at their own pace: frames the consumer has no time for are
    dropped. The others (files, folders, triggered cameras: every frame is a part) wait for the consumer.
    """

    name: str
    live: bool

    def read(self) -> Frame | Idle | None:
        """Next frame; IDLE when a triggered camera has none yet but answers; None at the end of a file or folder."""
        ...

    def close(self) -> None:
        """Release the device or file."""
        ...


class Pacer:
    """Sleeps so that calls to :meth:`wait` happen at most ``fps`` times per second."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        """Block until the next slot."""
        if not self.period:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self.period


class FolderSource:
    """Replays the images of a folder in name order, skipping (and counting) files that do not decode."""

    def __init__(self, folder: Path, fps: float | None = None, loop: bool = False) -> None:
        self.name = str(folder)
        self.live = False
        if not folder.is_dir():
            raise CameraError(f"camera.source: folder {folder} does not exist; check the path or mount")
        self.files = list_images(folder)
        if not self.files:
            raise CameraError(f"camera.source: folder {folder} has no images (.png/.jpg/.bmp/.tif)")
        self.loop = loop
        self._pacer = Pacer(fps)
        self._pos = 0
        self._count = 0
        self.bad_frames = 0  # undecodable files met (each skipped)
        self._log = RateLimitedLog(logger, fold_numbers=False)  # one line per bad file per minute

    def read(self) -> Frame | None:
        """Next readable image of the folder; an unreadable file is counted (``bad_frames``) and skipped.

        Raises:
            CameraError: A whole pass over the folder found no readable image.
        """
        for _ in range(len(self.files) + 1):
            if self._pos >= len(self.files):
                if not self.loop:
                    return None
                self._pos = 0
            path = self.files[self._pos]
            self._pos += 1
            self._pacer.wait()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self._count += 1
                return Frame(image=image, ts=time.time(), index=self._count, origin=path.name)
            self.bad_frames += 1
            self._log.warning(path.name, "camera.source: %s is not a readable image; skipped", path)
        raise CameraError(f"camera.source: no image in {self.name} is readable; remove or replace them")

    def close(self) -> None:
        """Nothing to release."""


FILE_CHECK_S = 0.5  # how often a video file source checks that its path still names the opened file


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _device(source: int | str) -> int | str:
    if isinstance(source, str) and source.isdigit():
        return int(source)
    return source


class OpenCVSource:
    """A USB/V4L2 device, an RTSP/HTTP stream or a video file opened with OpenCV."""

    def __init__(self, config: CameraConfig) -> None:
        source = _device(config.source)
        self.name = str(source)
        self.is_file = isinstance(source, str) and "://" not in source and not source.startswith("/dev/")
        self.live = not self.is_file
        if self.is_file and not Path(source).is_file():
            raise CameraError(f"camera.source: video file {source} does not exist; check the path")
        timeout_ms = int(config.open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        self.cap = cv2.VideoCapture(source, cv2.CAP_ANY, params)
        if not self.cap.isOpened():
            kind = "device" if isinstance(source, int) or str(source).startswith("/dev/") else "stream"
            kind = "video file" if self.is_file else kind
            raise CameraError(
                f"camera.source: cannot open {kind} {source!r}; check that it is plugged in / reachable "
                "and not used by another process"
            )
        if config.width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        if config.height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        self.loop = config.loop
        self._pacer = Pacer(config.fps)
        self._count = 0
        self._identity = _file_identity(source) if self.is_file else None
        self._checked = time.monotonic()

    def _check_file(self) -> None:
        """A looping replay would keep reading a deleted file through its open handle: notice it."""
        now = time.monotonic()
        if now - self._checked < FILE_CHECK_S:
            return
        self._checked = now
        if _file_identity(self.name) != self._identity:
            raise CameraError(f"camera.source: video file {self.name} was removed or replaced; reopening it")

    def read(self) -> Frame | None:
        """Grab and decode the next frame."""
        self._pacer.wait()
        if self.is_file:
            self._check_file()
        ok, image = self.cap.read()
        if not ok and self.is_file and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.cap.read()
        if not ok:
            if self.is_file:
                return None
            raise CameraError(f"camera.source: {self.name} stopped delivering frames")
        self._count += 1
        return Frame(image=image, ts=time.time(), index=self._count, origin=self.name)

    def close(self) -> None:
        """Release the capture."""
        self.cap.release()


def open_source(config: CameraConfig) -> FrameSource:
    """Open the configured source: a folder replays images, genicam:// is a camera through Aravis, else OpenCV.

    Raises:
        CameraError: The source cannot be opened.
    """
    source = config.source
    if isinstance(source, str) and os.path.isdir(source):
        return FolderSource(Path(source), fps=config.fps, loop=config.loop)
    if genicam_device(source) is not None:
        from edge_ad.capture.genicam.source import GenicamSource  # PyGObject: only with the genicam extra

        return GenicamSource(config)
    return OpenCVSource(config)
