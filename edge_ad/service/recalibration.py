"""``edge_ad/<station>/cmd/recalibrate``: recalibrate from the daemon's own camera, on request.

Off by default. The station accepts only commands signed with its key (:mod:`command_auth`), on a
broker that authenticates users. The daemon owns the camera, so it collects the frames itself (no
second process fighting for a USB device), then runs :func:`recalibrate` in a worker thread; the
model reloader picks up the new active version. Unsigned junk is counted and answered at most once
per cause a minute, so a flood cannot fill the journal or the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from edge_ad.calibrate.frames import frames_from_folder
from edge_ad.calibrate.recalibrate import recalibrate, require_frames
from edge_ad.config import EdgeAdConfig
from edge_ad.config.loader import describe_errors
from edge_ad.errors import DatasetError, EdgeAdError
from edge_ad.guard import RateLimitedLog
from edge_ad.publish.messages import MAX_FRAMES, SCHEMA_VERSION, RecalibrateCommand
from edge_ad.publish.payloads import stamp
from edge_ad.publish.session import Delivery, ReplyRoute
from edge_ad.service.command_auth import CommandRejected, CommandVerifier
from edge_ad.types import Frame, round_score

__all__ = ["RecalibrateCommand", "RecalibrationRunner"]

logger = logging.getLogger(__name__)
MAX_COLLECT_S = 1800.0  # a command may take this long to collect its frames (frames x interval_s)
STALL_S = 120.0  # collecting gives up when it runs this much longer than frames x interval_s (camera offline?)
PROGRESS_S = 0.5  # a collecting command reports how many frames it has at most this often


class RecalibrationRunner:
    """Accepts commands (network thread), collects frames (main loop), recalibrates (worker thread).

    Args:
        config: The station's config.
        verifier: Opens signed commands.
        publish: Sends a reply on ``cmd/recalibrate/result``.
        respond: MQTT 5: sends a copy of a reply to the command's Response Topic (with its Correlation Data).
    """

    def __init__(
        self,
        config: EdgeAdConfig,
        verifier: CommandVerifier,
        publish: Callable[[dict], None],
        respond: Callable[[ReplyRoute, dict], None] | None = None,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.publish = publish
        self.respond = respond
        self.accepted = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._command: RecalibrateCommand | None = None
        self._route: ReplyRoute | None = None  # where the running command wants copies of its replies
        self._frames: list[np.ndarray] = []
        self._last_ts = 0.0
        self._deadline = 0.0
        self._reported = 0.0  # monotonic time of the last progress reply
        self._worker: threading.Thread | None = None
        self._log = RateLimitedLog(logger)

    def _reply(self, command_id: str | None, state: str, route: ReplyRoute | None = None, **fields) -> None:
        reply = {"schema": SCHEMA_VERSION, "id": command_id, "state": state, **stamp(), **fields}
        self.publish(reply)
        if route is not None and self.respond is not None:
            self.respond(route, reply)

    def on_message(self, payload: bytes, delivery: Delivery | None = None) -> None:
        """Verify and validate a command; reject (and count) anything unsigned, malformed or arriving while busy."""
        route = delivery.route if delivery is not None else None
        body: dict | None = None
        try:
            body = self.verifier.open(payload)
            command = RecalibrateCommand.model_validate(body)
        except (CommandRejected, ValidationError) as exc:
            if isinstance(exc, ValidationError):
                reason, signed = describe_errors(exc, RecalibrateCommand)[0], True
            else:
                reason, signed, body = str(exc), exc.answer, exc.body
            self._reject(_echo_id(body), reason, signed, route)
            return
        if command.defects_dir is not None and self._defects(command.defects_dir) is None:
            reason = "defects_dir: not an allowed folder of defect images (see recalibration.defects_root)"
            self._reject(command.id, reason, signed=True, route=route)
            return
        command = command.model_copy(
            update={"frames": command.frames or self.config.recalibration.needed_good_frames()}
        )
        try:
            require_frames(command.frames, self.config.recalibration)  # refused now, not after collecting
            if command.frames * command.interval_s > MAX_COLLECT_S:
                raise DatasetError(
                    f"frames x interval_s: {command.frames * command.interval_s:.0f} s of collecting, more than "
                    f"{MAX_COLLECT_S:.0f} s; collect fewer frames or closer together"
                )
            if command.frames > MAX_FRAMES:
                raise DatasetError(
                    f"frames: the false-reject target needs {command.frames} good frames, more than a command "
                    f"collects ({MAX_FRAMES}); raise recalibration.target_false_reject or run edge-ad recalibrate"
                )
        except DatasetError as exc:
            self._reject(command.id, str(exc), signed=True, route=route)
            return
        with self._lock:
            busy = self._command is not None or self._fitting()
            if not busy:
                self._command, self._frames, self._last_ts, self._route = command, [], 0.0, route
                self._reported = time.monotonic()
                self._deadline = time.monotonic() + command.frames * command.interval_s + STALL_S
        if busy:
            self._reject(command.id, "a recalibration is already running", signed=True, route=route)
            return
        self.accepted += 1
        logger.info("recalibrate command %s: collecting %d frames", command.id, command.frames)
        self._reply(command.id, "collecting", route, frames=command.frames)

    def _reject(self, command_id: str | None, reason: str, signed: bool, route: ReplyRoute | None = None) -> None:
        """Count, log (once per cause a minute) and answer a rejected command.

        A signed command always gets its answer; unsigned ones only with the log line, so junk cannot
        make the station flood the broker.
        """
        self.rejected += 1
        logged = self._log.warning(reason, "recalibrate command rejected: %s", reason)
        if signed or logged:
            self._reply(command_id, "rejected", route, reason=reason)

    def _defects(self, folder: Path) -> Path | None:
        """``folder`` inside ``recalibration.defects_root`` (symlinks resolved), or None.

        The reply is the same for "outside the root", "missing" and "not a folder", so a command cannot
        probe the device's filesystem.
        """
        root = self.config.recalibration.defects_root
        if root is None or folder.is_absolute():
            return None
        base = root.resolve()
        target = (base / folder).resolve()
        return target if target.is_relative_to(base) and target.is_dir() else None

    def tick(self) -> None:
        """Main loop, every pass: give up a collection that stalled (camera offline), so commands work again."""
        with self._lock:
            command, route = self._command, self._route
            if command is None or time.monotonic() < self._deadline:
                return
            got, self._command, self._frames = len(self._frames), None, []
        self._abandon(
            command,
            f"collected {got} of {command.frames} frames in time (camera offline?); nothing was changed",
            route,
        )

    def _abandon(self, command: RecalibrateCommand, reason: str, route: ReplyRoute | None) -> None:
        """A collecting command that cannot go on: log it and answer ``error`` (the station takes commands again)."""
        logger.error("recalibrate command %s: %s", command.id, reason)
        self._reply(command.id, "error", route, reason=reason)

    def offer(self, frame: Frame) -> None:
        """Main loop: keep this frame if a command is collecting (``interval_s`` apart)."""
        progress: int | None = None
        with self._lock:
            command, route = self._command, self._route
            if command is None or frame.ts - self._last_ts < command.interval_s:
                return
            needed_mb = command.frames * frame.image.nbytes / 2**20
            budget_mb = self.config.recalibration.max_collect_mb
            frames: list[np.ndarray] = []
            if needed_mb <= budget_mb:  # else refused at the first frame, before the station runs out of memory
                self._frames.append(frame.image.copy())
                self._last_ts = frame.ts
                if len(self._frames) < command.frames:
                    if time.monotonic() - self._reported >= PROGRESS_S:
                        self._reported, progress = time.monotonic(), len(self._frames)
                else:
                    frames = self._frames
            if frames or needed_mb > budget_mb:
                self._command, self._frames = None, []
            if frames:  # the worker exists before the lock is let go: no second command slips in before it starts
                self._worker = threading.Thread(
                    target=self._run, args=(command, frames, route), name="recalibrate", daemon=True
                )
        if progress is not None:  # a progress bar's worth, at most twice a second
            self._reply(command.id, "collecting", route, frames=command.frames, collected=progress)
        if frames:
            self._start(command, frames, route)
        elif needed_mb > budget_mb:
            h, w = frame.image.shape[:2]
            self._abandon(
                command,
                f"frames: {command.frames} frames of {w}x{h} need {needed_mb:.0f} MB, more than "
                f"recalibration.max_collect_mb {budget_mb:.0f}; collect fewer or run edge-ad recalibrate on the device",
                route,
            )

    def _fitting(self) -> bool:
        """A worker is made (started or about to be) and not finished; under ``_lock``."""
        worker = self._worker
        return worker is not None and (worker.ident is None or worker.is_alive())

    def _start(self, command: RecalibrateCommand, frames: list[np.ndarray], route: ReplyRoute | None) -> None:
        """All frames collected: say so and start the worker :meth:`offer` made."""
        assert self._worker is not None
        try:
            self._reply(command.id, "fitting", route, frames=len(frames))
        finally:  # a reply that failed must not leave the station "busy" for ever
            self._worker.start()

    def _run(self, command: RecalibrateCommand, frames: list[np.ndarray], route: ReplyRoute | None = None) -> None:
        try:
            folder = self._defects(command.defects_dir) if command.defects_dir else None
            defects = frames_from_folder(folder, "defects_dir") if folder else None
            outcome = recalibrate(
                self.config,
                frames,
                defects,
                refit_memory=command.refit_memory,
                dry_run=command.dry_run,
                source=f"mqtt:{command.id}",
                activate=command.activate,
            )
        except EdgeAdError as exc:
            logger.error("recalibrate command %s failed: %s", command.id, exc)
            self._reply(command.id, "error", route, reason=str(exc))
            return
        state = "passed" if outcome.passed else "failed"
        logger.info("recalibrate command %s: %s", command.id, state.upper())
        self._reply(
            command.id,
            state,
            route,
            reason="; ".join(outcome.reasons),
            dry_run=command.dry_run,
            threshold={"old": _rounded(outcome.old_threshold), "new": _rounded(outcome.new_threshold)},
            false_reject={"old": outcome.old_false_reject, "new": outcome.false_reject},
            recall={"old": outcome.old_recall, "new": outcome.recall},
            version=outcome.installed.name if outcome.installed else None,
            active=command.activate if outcome.installed else None,
            histogram=outcome.histogram.name if outcome.histogram else None,
        )

    def join(self, timeout: float | None = None) -> None:
        """Wait for a running recalibration (daemon shutdown)."""
        if self._worker is not None and self._worker.ident is not None:  # made but never started: nothing to wait for
            self._worker.join(timeout)


def _echo_id(raw: object) -> str | None:
    """The id of a rejected command when it is a plausible one (so the sender can match the reply)."""
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


def _rounded(threshold: float | None) -> float | None:
    return round_score(threshold) if threshold is not None else None
