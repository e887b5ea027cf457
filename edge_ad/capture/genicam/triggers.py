"""Software triggers for a GenICam camera: one in flight at a time, fired by a thread of their own.

A camera busy exposing or reading out ignores ``TriggerSoftware``, so firing ahead would bind frames to the
wrong parts: the next trigger is fired only when the frame of the one in flight has arrived (or was given
up). A frame answers the trigger in flight only if its reception began after that trigger was executed.
Commands go to the camera from this module's thread, never from the caller's (an MQTT or OPC UA thread must
not wait for a camera that stopped answering). Each trigger comes with ``wanted`` (is anyone still waiting
for it? a trigger dropped or expired meanwhile is not fired) and ``lost`` (told why no frame will come).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge_ad.errors import CameraError
from edge_ad.guard import RateLimitedLog

__all__ = ["Lost", "Queued", "SoftwareTrigger", "Wanted"]

logger = logging.getLogger(__name__)

Wanted = Callable[[object], bool]
Lost = Callable[[object, str], None]


@dataclass(frozen=True)
class Queued:
    """A trigger given to :meth:`SoftwareTrigger.fire`, with its callbacks."""

    token: object
    wanted: Wanted
    lost: Lost


@dataclass(frozen=True)
class _InFlight:
    pending: Queued
    fired_ns: int  # host clock when TriggerSoftware was sent
    fired_at: float  # monotonic, for the frame timeout


class SoftwareTrigger:
    """Fires ``execute`` (TriggerSoftware) for one waiting trigger at a time.

    Args:
        execute: Sends TriggerSoftware; raises CameraError when the camera refuses or does not answer.
        frame_timeout_s: A trigger whose frame has not arrived this long after it was fired is lost.
        camera: How log lines name the camera.
    """

    def __init__(self, execute: Callable[[], None], frame_timeout_s: float, camera: str) -> None:
        self._execute = execute
        self.frame_timeout_s = frame_timeout_s
        self.camera = camera
        self.lost = 0  # triggers whose frame never came, came incomplete, or could not be fired
        self.broken: str | None = None  # the camera refused a command: the source is to be reopened
        self._cond = threading.Condition()
        self._waiting: deque[Queued] = deque()
        self._in_flight: _InFlight | None = None
        self._closed = False
        self._log = RateLimitedLog(logger)
        self._thread = threading.Thread(target=self._run, name="camera-trigger", daemon=True)
        self._thread.start()

    def fire(self, token: object, wanted: Wanted, lost: Lost) -> None:
        """Queue ``token``: fired as soon as no other trigger is in flight (never blocks on the camera).

        Raises:
            CameraError: The camera stopped taking commands (it is about to be reopened).
        """
        with self._cond:
            if self.broken is not None or self._closed:
                raise CameraError(f"camera {self.camera}: {self.broken or 'closed'}")
            while self._waiting and not self._waiting[0].wanted(self._waiting[0].token):
                self._waiting.popleft()  # answered meanwhile (dropped, expired): never fired
            self._waiting.append(Queued(token, wanted, lost))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._in_flight is None and bool(self._waiting)))
                if self._closed:
                    return
                pending = self._waiting.popleft()
                if not pending.wanted(pending.token):
                    continue
                flight = _InFlight(pending, time.time_ns(), time.monotonic())
                self._in_flight = flight  # before the command: its frame may arrive before execute() returns
            try:
                self._execute()
            except CameraError as exc:
                with self._cond:
                    self.broken = str(exc)
                    mine = self._in_flight is flight
                    if mine:
                        self._in_flight = None
                if mine:
                    self._give_up(pending, f"the camera refused the software trigger: {exc}")
            except Exception as exc:  # a driver error must not end the thread that fires every trigger
                with self._cond:
                    self.broken = f"software trigger failed: {exc}"

    def _give_up(self, pending: Queued, reason: str) -> None:
        self.lost += 1
        self._log.warning("lost", "camera %s: a trigger got no frame: %s", self.camera, reason)
        try:
            pending.lost(pending.token, reason)
        except Exception:  # the caller's callback must not end this thread (or the reader's): every trigger waits
            logger.exception("camera %s: telling a trigger it got no frame failed", self.camera)

    def bind(self, received_ns: int) -> Queued | None:
        """The trigger this frame answers (its reception began at ``received_ns``, host clock), if any."""
        with self._cond:
            flight = self._in_flight
            if flight is None or received_ns < flight.fired_ns:
                return None  # a frame nobody here fired, or one that began before the trigger
            self._in_flight = None
            self._cond.notify_all()
        return flight.pending

    def frame_lost(self, bound: Queued, reason: str) -> None:
        """The frame bound to a trigger cannot be judged (incomplete): that trigger gets no frame."""
        self._give_up(bound, reason)

    def check_late(self) -> None:
        """Give up the trigger in flight once its frame is ``frame_timeout_s`` late; the next one fires."""
        with self._cond:
            flight = self._in_flight
            if flight is None or time.monotonic() - flight.fired_at < self.frame_timeout_s:
                return
            self._in_flight = None
            self._cond.notify_all()
        self._give_up(flight.pending, f"no frame within {self.frame_timeout_s:.1f} s of the software trigger")

    def close(self, reason: str) -> None:
        """Stop firing; every trigger in flight or waiting is told it gets no frame (``reason``)."""
        with self._cond:
            self._closed = True
            left = ([self._in_flight.pending] if self._in_flight else []) + list(self._waiting)
            self._in_flight = None
            self._waiting.clear()
            self._cond.notify_all()
        for pending in left:
            if pending.wanted(pending.token):
                self._give_up(pending, reason)
