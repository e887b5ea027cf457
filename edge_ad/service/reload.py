"""Hot model reload: a new active bundle (or SIGHUP) loads, self-tests and swaps between frames."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from edge_ad.bundle.store import load_private, private_copies, resolve_version_dir
from edge_ad.bundle.trust import Trust, Verdict
from edge_ad.commissioning import load_model
from edge_ad.config import ModelConfig
from edge_ad.errors import EdgeAdError, first_line
from edge_ad.guard import Guard
from edge_ad.inference import AnomalyModel
from edge_ad.inference.selftest import self_test

__all__ = ["ModelReloader"]

logger = logging.getLogger(__name__)


class ModelReloader:
    """Watches ``model.path`` and prepares replacement models in a background thread.

    The daemon calls :meth:`take` between frames; a model is only ever handed over after it
    loaded, verified, was commissioned on this device (a new version is measured here, in the
    background) and passed its self-test. A failed load leaves the running model alone and
    reports the error through ``on_error``; the same target is not retried until it changes (or
    SIGHUP asks again).

    Args:
        config: The ``model`` section.
        state_dir: The service state directory (commissioning records, OpenVINO compile cache).
        current: The bundle version directory now in service.
        on_error: Called with the error message of a failed reload.
        interval_s: How often the active link is checked.
        guard: Keeps the watcher alive through anything unexpected.
        trust: Which versions may be judged with (signatures); default: any verified version.
    """

    def __init__(
        self,
        config: ModelConfig,
        state_dir: Path,
        current: Path,
        on_error: Callable[[str], None],
        interval_s: float = 2.0,
        guard: Guard | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.guard = guard or Guard()
        self.trust = trust or Trust()
        self.config = config
        self.state_dir = state_dir
        self.on_error = on_error
        self.interval_s = interval_s
        self._target = current.resolve()
        self._request = threading.Event()
        self._stop = threading.Event()
        self._ready: tuple[AnomalyModel, Verdict] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="model-reload", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def request(self, *_: object) -> None:
        """Reload now, even if the active version did not change (SIGHUP handler; signal-safe)."""
        self._request.set()

    def take(self) -> tuple[AnomalyModel, Verdict] | None:
        """A verified replacement model and how it is signed, once (None most of the time)."""
        with self._lock:
            model, self._ready = self._ready, None
        return model

    def _watch(self) -> None:
        while not self._stop.is_set():
            forced = self._request.wait(self.interval_s)
            self._request.clear()
            if self._stop.is_set():
                return
            self.guard.call("model reload", self._check, forced)

    def _check(self, forced: bool) -> None:
        try:
            target = resolve_version_dir(self.config.path).resolve()
        except (EdgeAdError, OSError) as exc:  # e.g. 'active' replaced by a regular file
            if forced:
                self.on_error(f"reload failed: {exc}")
            return
        if target == self._target and not forced:
            return
        self._target = target
        self._load(target)

    def _load(self, target: Path) -> None:
        logger.info("loading model from %s", target)
        try:
            bundle = load_private(target, private_copies(self.state_dir))  # judged from a copy nobody else writes
            verdict = self.trust.check(bundle)  # an untrusted version never judges a frame
            model = load_model(bundle, self.config, self.state_dir, context="hot reload")
            self_test(model, self.config.selftest_tolerance)
        except EdgeAdError as exc:
            logger.error("reload failed, the running model stays in service: %s", exc)
            self.on_error(f"reload failed: {exc}")
            return
        except Exception as exc:  # the watcher must survive anything a bad bundle or device throws
            logger.exception("reload failed, the running model stays in service")
            self.on_error(f"reload failed: {type(exc).__name__}: {first_line(exc)}")
            return
        with self._lock:
            self._ready = (model, verdict)

    def close(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._request.set()
