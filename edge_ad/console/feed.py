"""The console's one MQTT subscriber: the station's latest status and stats, recent verdicts and the drift series.

One :class:`Feed` per console process, started and stopped with the app (FastAPI lifespan). It
connects like the command-line tools do (``mqtt`` section: host, port, TLS, credentials), in a
thread of its own that reconnects after a broker outage with a growing delay (1 s to 30 s). A
payload that is not what the station publishes (not JSON, not an object, a verdict without a
known ``verdict``) is counted in :attr:`Feed.junk` and ignored: nothing a publisher sends can end
the thread. Readers (the ``/events`` stream, the pages) take copies under a lock, and
:attr:`Feed.version` / :attr:`Feed.received` tell them when something changed.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_ad.config import EdgeAdConfig
from edge_ad.errors import first_line
from edge_ad.guard import RateLimitedLog
from edge_ad.publish.subscriber import Subscriber
from edge_ad.publish.topics import Topics

__all__ = ["MAX_PAYLOAD", "VERDICTS_KEPT", "Feed", "drift_value"]

logger = logging.getLogger(__name__)

VERDICTS_KEPT = 200
MAX_PAYLOAD = 256 * 1024  # bytes; a station's messages are a few hundred bytes, anything this big is junk
KINDS = ("OK", "NG", "ERROR")


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        return False


def drift_value(verdict: dict[str, Any]) -> float | None:
    """The point an OK verdict adds to the drift series: ``score_norm`` (0..1, threshold at 0.5).

    A verdict without ``score_norm`` (spooled by a version-1 station) gives ``0.5 × score / threshold``.
    """
    norm = verdict.get("score_norm")
    if _number(norm):
        return float(norm)
    score, threshold = verdict.get("score"), verdict.get("threshold")
    if _number(score) and _number(threshold) and threshold > 0:
        return min(max(0.5 * score / threshold, 0.0), 1.0)
    return None


def _valid_verdict(message: dict[str, Any]) -> bool:
    if message.get("verdict") not in KINDS:
        return False
    for key in ("score", "threshold", "score_norm", "ts", "latency_ms"):
        if key in message and not _number(message[key]):
            return False
    return True


class Feed(Subscriber):
    """What the station publishes, as one console process has received it.

    Args:
        config: The station configuration (``station``, ``mqtt``, ``service.drift``).
        drift_points: OK points kept for the drift sparkline; default ``service.drift.window`` (else 200).
    """

    def __init__(self, config: EdgeAdConfig, drift_points: int | None = None) -> None:
        self.config = config
        drift = config.service.drift
        self.drift_points = drift_points or (drift.window if drift else 200)
        self.drift_fraction = drift.fraction if drift else None
        topics = Topics(config.station, config.mqtt.prefix)
        self._kind = {topics.status(): "status", topics.stats(): "stats", topics.verdict(): "verdict"}
        super().__init__(config.mqtt, list(self._kind), "console feed")
        self._seen: deque[tuple[Any, Any]] = deque(maxlen=VERDICTS_KEPT)
        self._log = RateLimitedLog(logger)
        self.status: dict[str, Any] | None = None
        self.stats: dict[str, Any] | None = None
        self.verdicts: deque[tuple[int, dict[str, Any]]] = deque(maxlen=VERDICTS_KEPT)
        self.drift: deque[float] = deque(maxlen=self.drift_points)
        self.last_ng: dict[str, Any] | None = None
        self.junk: dict[str, int] = {}
        self.received = 0  # verdicts received: the number of the newest one
        self.newest_ng = 0  # the number of the newest NG verdict
        self._waiters: dict[Callable[[], None], bool] = {}  # wake -> NG only

    def on_message(self, topic: str, payload: bytes) -> None:
        """Keep a status, stats or verdict message; count anything else on those topics as junk."""
        kind = self._kind.get(topic)
        if kind is None:
            return
        try:
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(f"{len(payload)} bytes")
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self._junk(kind, f"not JSON ({first_line(exc)[:80]})")
            return
        if not isinstance(message, dict):
            self._junk(kind, "not a JSON object")
            return
        if kind == "verdict":
            if not _valid_verdict(message):
                self._junk(kind, "not a verdict")
                return
            self.add_verdict(message)
            return
        with self._lock:
            setattr(self, kind, message)
            self.version += 1

    def _junk(self, kind: str, why: str) -> None:
        with self._lock:
            self.junk[kind] = self.junk.get(kind, 0) + 1
            count = self.junk[kind]
        self._log.warning(f"junk {kind}", "console: ignored a message on %s: %s (%d so far)", kind, why, count)

    # -- state -----------------------------------------------------------------------------------

    def add_verdict(self, verdict: dict[str, Any]) -> None:
        """Keep a verdict (a replayed duplicate of one kept, same ``run`` and ``seq``, is skipped)."""
        key = (verdict.get("run"), verdict.get("seq"))
        ng = verdict["verdict"] == "NG"
        with self._lock:
            if verdict.get("seq") is not None and key in self._seen:
                return
            self._seen.append(key)
            self.received += 1
            self.verdicts.append((self.received, verdict))
            if verdict["verdict"] == "OK" and (point := drift_value(verdict)) is not None:
                self.drift.append(round(point, 6))
                self.version += 1
            elif ng:
                self.last_ng, self.newest_ng = verdict, self.received
                self.version += 1
            woken = [wake for wake, ng_only in self._waiters.items() if ng or not ng_only]
            for wake in woken:
                del self._waiters[wake]
        for wake in woken:
            try:
                wake()
            except Exception:  # one waiter's fault never keeps the verdict from the others (or ends the thread)
                logger.exception("console: a live stream's wake-up failed")

    def on_next_verdict(
        self, wake: Callable[[], None], ng_only: bool = False, after: int | None = None
    ) -> Callable[[], None]:
        """Call ``wake`` once, on the receiving thread, right after the next verdict (NG: ``ng_only``) is kept.

        With ``after``, a verdict (NG) already kept past number ``after`` calls ``wake`` at once: nothing
        kept between the caller's last look and this call is missed. Returns a function that forgets
        ``wake`` (a waiter that gave up). A verdict arrives just after the daemon's inference ended, so
        what a page does then falls in the gap before its next frame.
        """
        with self._lock:
            newest = self.newest_ng if ng_only else self.received
            missed = after is not None and newest > after
            if not missed:
                self._waiters[wake] = ng_only
        if missed:
            wake()

        def forget() -> None:
            with self._lock:
                self._waiters.pop(wake, None)

        return forget

    def verdicts_after(self, number: int) -> list[tuple[int, dict[str, Any]]]:
        """The kept verdicts received after verdict ``number`` (oldest first), with their numbers."""
        with self._lock:
            return [(n, v) for n, v in self.verdicts if n > number]

    def ng_verdicts(self) -> list[dict[str, Any]]:
        """The kept NG verdicts, newest first."""
        with self._lock:
            return [v for _, v in reversed(self.verdicts) if v.get("verdict") == "NG"]

    def snapshot(self) -> dict[str, Any]:
        """Copies of everything a page shows, taken together."""
        with self._lock:
            return {
                "version": self.version,
                "received": self.received,
                "connected": self.connected,
                "error": self.error,
                "status": dict(self.status) if self.status is not None else None,
                "stats": dict(self.stats) if self.stats is not None else None,
                "drift": list(self.drift),
                "last_ng": dict(self.last_ng) if self.last_ng is not None else None,
                "junk": dict(self.junk),
            }
