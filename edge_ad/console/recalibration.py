"""The recalibration wizard's job: one signed ``cmd/recalibrate`` at a time, followed to its result.

The daemon owns the camera, so the console never captures itself: it sends the same signed command
``edge-ad command recalibrate`` sends (:func:`edge_ad.service.command_client.send_command`) with
``activate: false`` and follows the replies (``collecting`` with a count, ``fitting``, then
``passed``/``failed``/``error``/``rejected``). A passing version is installed but not active; the
technician activates it with a click through the models page's checked activation.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ad.config import EdgeAdConfig
from edge_ad.errors import EdgeAdError
from edge_ad.service.command_client import FINAL_STATES, send_command

__all__ = ["HISTOGRAM_PATTERN", "Job", "Wizard", "defect_folders", "histogram_dir", "unavailable"]

logger = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 900.0  # a refit of a big memory bank on a slow PC takes minutes between replies
HISTOGRAM_PATTERN = re.compile(r"recalibration-\d{8}T\d{6}\.png")
Sender = Callable[[EdgeAdConfig, str, dict[str, Any], float], Iterator[dict]]


@dataclass
class Job:
    """One recalibration as the wizard shows it."""

    id: str
    user: str
    frames: int
    dry_run: bool
    started: float = field(default_factory=time.time)
    state: str = "sending"  # sending, then the station's states (collecting, fitting, passed, ...)
    collected: int = 0
    result: dict[str, Any] = field(default_factory=dict)  # the final reply

    @property
    def done(self) -> bool:
        """The station gave its final answer, or the console gave up waiting."""
        return self.state in FINAL_STATES

    def progress(self) -> dict[str, Any]:
        """What the page's progress bar polls."""
        return {"id": self.id, "state": self.state, "collected": self.collected, "frames": self.frames,
                "done": self.done}  # fmt: skip


def unavailable(config: EdgeAdConfig) -> str | None:
    """Why this station cannot be recalibrated from the console, or None when it can."""
    if not config.recalibration.mqtt_command:
        return (
            "This station does not take recalibration commands (recalibration.mqtt_command: false). Turn it on "
            "(it needs a commands key and a broker user; see docs/console.md, Recalibrate) or run "
            "edge-ad recalibrate on the device."
        )
    if not config.commands.has_secret:
        return "This station has no command key (commands.secret_file or commands.secret_env)."
    return None


def histogram_dir(config: EdgeAdConfig) -> Path:
    """Where the station writes a recalibration's score histogram."""
    return config.service.state_dir / "recalibration"


def defect_folders(config: EdgeAdConfig) -> list[str]:
    """The folders of defect images a command may name (under ``recalibration.defects_root``)."""
    root = config.recalibration.defects_root
    if root is None or not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class Wizard:
    """Runs at most one recalibration job for the console and keeps the last one to show.

    Args:
        config: The station's config (broker, station name, command key).
        send: Sends a signed command and yields its replies (tests substitute it).
    """

    def __init__(self, config: EdgeAdConfig, send: Sender = send_command) -> None:
        self.config = config
        self.send = send
        self._lock = threading.Lock()
        self._job: Job | None = None

    @property
    def job(self) -> Job | None:
        """The running or last job."""
        return self._job

    def start(self, user: str, frames: int, interval_s: float, refit_memory: bool, dry_run: bool,
              defects_dir: str | None = None) -> Job:  # fmt: skip
        """Send a recalibration command and follow it in a thread.

        Raises:
            EdgeAdError: One is running already, or the station takes no commands.
        """
        if (why := unavailable(self.config)) is not None:
            raise EdgeAdError(why)
        command: dict[str, Any] = {
            "id": f"console-{secrets.token_hex(4)}",
            "frames": frames,
            "interval_s": interval_s,
            "refit_memory": refit_memory,
            "dry_run": dry_run,
            "activate": False,
        }
        if defects_dir:
            command["defects_dir"] = defects_dir
        with self._lock:
            if self._job is not None and not self._job.done:
                raise EdgeAdError(f"a recalibration started by {self._job.user} is still running")
            self._job = job = Job(id=command["id"], user=user, frames=frames, dry_run=dry_run)
        logger.warning("console: %s started recalibration %s (%d frames, dry run %s)", user, job.id, frames, dry_run)
        threading.Thread(target=self._follow, args=(job, command), name="console-recalibrate", daemon=True).start()
        return job

    def _follow(self, job: Job, command: dict[str, Any]) -> None:
        try:
            for reply in self.send(self.config, "recalibrate", command, REPLY_TIMEOUT_S):
                self._apply(job, reply)
        except EdgeAdError as exc:
            self._finish(job, "error", str(exc))
        except Exception as exc:  # the thread must report, never die silently
            logger.exception("console: recalibration %s", job.id)
            self._finish(job, "error", f"the console failed while following the command: {exc}")
        if not job.done:
            self._finish(
                job, "error", f"no answer from the station for {REPLY_TIMEOUT_S:.0f} s; is its daemon running?"
            )

    @staticmethod
    def _apply(job: Job, reply: dict[str, Any]) -> None:
        state = reply.get("state")
        if not isinstance(state, str):
            return
        if isinstance(reply.get("frames"), int) and state in ("collecting", "fitting"):
            job.frames = reply["frames"]
        if state == "fitting":
            job.collected = job.frames
        elif isinstance(reply.get("collected"), int):
            job.collected = reply["collected"]
        if state in FINAL_STATES:
            job.result = reply
        job.state = state

    @staticmethod
    def _finish(job: Job, state: str, reason: str) -> None:
        logger.error("console: recalibration %s: %s", job.id, reason)
        job.result = {"state": state, "reason": reason}
        job.state = state
