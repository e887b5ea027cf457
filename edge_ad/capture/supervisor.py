"""Supervised capture: a reader thread per source, staleness judged outside ``read()``, reconnects.

A ``read()`` that hangs (a dead RTSP server, an unplugged USB camera) never blocks the daemon:
the watchdog sees no frame for ``stall_timeout_s``, reports the camera offline, abandons the stuck
reader and reopens the source with capped exponential backoff (1, 2, 4 … ``reconnect_max_s``).
File and folder replays are lossless (the reader waits for the consumer); live sources keep
only the newest frame and count the ones the consumer never saw as dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from edge_ad.capture.poll import IDLE
from edge_ad.capture.sources import FrameSource, open_source
from edge_ad.config import CameraConfig
from edge_ad.errors import CameraError
from edge_ad.types import Frame

__all__ = ["CaptureSupervisor", "EndOfSource"]

logger = logging.getLogger(__name__)

_END = object()


class EndOfSource(Exception):
    """A non-looping file or folder has been read to the end."""


class CaptureSupervisor:
    """Owns the frame source of a station and keeps it alive.

    Args:
        config: The ``camera`` section.
        on_state: Called with ("online" | "offline", reason) on every camera state change.
        opener: Opens a source (injectable for tests).
    """

    def __init__(
        self,
        config: CameraConfig,
        on_state: Callable[[str, str], None] | None = None,
        opener: Callable[[CameraConfig], FrameSource] = open_source,
    ) -> None:
        self.config = config
        self.on_state = on_state or (lambda state, reason: None)
        self.opener = opener
        self.state = "offline"
        self.reason = ""  # why the camera is offline, as last reported
        self.dropped = 0
        self.reconnects = 0
        self._bad_before = 0  # bad frames counted by sources replaced since
        self._frames: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._heartbeat = time.monotonic()
        self._idle_at = 0.0  # when a triggered camera last said it waits (and answers)
        self._failure: str | None = None
        self._source: FrameSource | None = None
        self._lossless = True
        self._watchdog = threading.Thread(target=self._watch, name="camera-watchdog", daemon=True)
        self._readers: list[threading.Thread] = []  # current and abandoned readers still inside read()

    @property
    def bad_frames(self) -> int:
        """Undecodable frames the sources skipped since start."""
        return self._bad_before + getattr(self._source, "bad_frames", 0)

    @property
    def name(self) -> str:
        """The configured source, for logs."""
        return str(self.config.source)

    def start(self) -> None:
        """Open the source once (errors are fatal here) and start reading.

        Raises:
            CameraError: The source cannot be opened.
        """
        self._attach(self.opener(self.config))
        self._watchdog.start()

    def _attach(self, source: FrameSource) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._bad_before += getattr(self._source, "bad_frames", 0)
            self._source = source
            self._lossless = not source.live
            self._heartbeat = time.monotonic()
            self._failure = None
        reader = threading.Thread(target=self._read, args=(source, generation), name="camera-reader", daemon=True)
        reader.start()
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        self._set_state("online", "")

    def _set_state(self, state: str, reason: str) -> None:
        if state == self.state:
            return
        self.state, self.reason = state, reason
        if state == "online":
            logger.info("camera %s online", self.name)
        else:
            logger.warning("camera %s offline: %s", self.name, reason)
        self.on_state(state, reason)

    def _still_offline(self, reason: str) -> None:
        """Report a reconnect failure whose reason differs from the last one (status shows why it is still offline)."""
        if reason != self.reason:
            self.reason = reason
            self.on_state("offline", reason)

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _read(self, source: FrameSource, generation: int) -> None:
        """Reader thread: owns ``source`` and closes it on the way out (never while inside ``read()``)."""
        try:
            self._read_until_stale(source, generation)
        finally:
            try:
                source.close()
            except Exception as exc:  # a broken driver must not kill the thread noisily
                logger.debug("camera %s: close failed: %s", self.name, exc)

    def _read_until_stale(self, source: FrameSource, generation: int) -> None:
        while self._current(generation):
            try:
                frame = source.read()
            except Exception as exc:
                with self._lock:
                    if self._current(generation):
                        self._failure = str(exc)
                return
            if not self._current(generation):
                return
            self._heartbeat = time.monotonic()
            if frame is IDLE:  # a triggered camera waiting, and answering
                self._idle_at = self._heartbeat
                continue
            item = _END if frame is None else frame
            while self._current(generation):
                try:
                    self._frames.put(item, timeout=0.2)
                    break
                except queue.Full:
                    if not self._lossless and item is not _END:
                        self._drop_oldest()
                    else:
                        self._heartbeat = time.monotonic()  # alive, waiting for the consumer
            if item is _END:
                return

    def _drop_oldest(self) -> None:
        try:
            self._frames.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(0.2):
            with self._lock:
                failure = self._failure
                stale = time.monotonic() - self._heartbeat
            if self.state == "online":
                if failure is None and stale < self.config.stall_timeout_s:
                    continue
                reason = failure or f"no frames from {self.name} in {stale:.0f} s"
                self._set_state("offline", reason)
                self._abandon()
                backoff = 1.0
            if self._stop.wait(backoff):
                return
            try:
                source = self.opener(self.config)
            except CameraError as exc:
                backoff = min(backoff * 2, self.config.reconnect_max_s)
                logger.info("camera %s: reconnect failed (%s); next try in %.0f s", self.name, exc, backoff)
                self._still_offline(str(exc))
                continue
            self.reconnects += 1
            self._attach(source)

    def _abandon(self) -> None:
        """Forget the current reader; it may be stuck in ``read()`` and releases its source when that returns.

        Releasing an OpenCV capture while another thread is inside ``read()`` crashes FFmpeg-backed
        streams, so the reader thread alone closes what it reads.
        """
        with self._lock:
            self._generation += 1
            self._source = None

    @property
    def waiting(self) -> bool:
        """A triggered camera is online and waiting for its trigger (it answered within the last second)."""
        return self.state == "online" and time.monotonic() - self._idle_at < 1.0

    def fire(self, token: object, wanted: Callable[[object], bool], lost: Callable[[object, str], None]) -> None:
        """Software trigger: the camera takes a frame for ``token``, and that frame carries it.

        Any thread; never waits for the camera. ``wanted(token)`` says whether it is still to be fired;
        ``lost(token, reason)`` hears when no frame will come for it.

        Raises:
            CameraError: The camera is offline, cannot be triggered by software, or stopped taking commands.
        """
        source = self._source
        fire = getattr(source, "fire", None)
        if source is None or self.state != "online":
            raise CameraError(f"camera {self.name} is offline")
        if fire is None:
            raise CameraError(f"camera {self.name} cannot be triggered by software")
        fire(token, wanted, lost)

    def counters(self) -> dict[str, int] | None:
        """The camera's own acquisition statistics (GenICam: incomplete frames, packet resends), if it has any."""
        source = self._source
        counters = getattr(source, "counters", None)
        if counters is None:
            return None
        try:
            return counters()
        except Exception as exc:  # a camera going away mid-read: no statistics this time
            logger.debug("camera %s: no counters: %s", self.name, exc)
            return None

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within ``timeout``.

        Raises:
            EndOfSource: A finite source ended.
        """
        try:
            item = self._frames.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            raise EndOfSource(self.name)
        return item

    def close(self) -> None:
        """Stop the watchdog and the readers; each reader releases its own source (bounded wait)."""
        self._stop.set()
        self._abandon()
        # Threads still inside OpenCV/FFmpeg when the interpreter exits abort the process, so wait
        # for a reconnect in progress (open timeout) and for readers stuck in read() (read timeout).
        deadline = time.monotonic() + 2 * self.config.open_timeout_s + 1.0
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=max(0.0, deadline - time.monotonic()))
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
