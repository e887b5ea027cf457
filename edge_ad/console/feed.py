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
import threading
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_ad.config import EdgeAdConfig
from edge_ad.errors import EdgeAdError, first_line
from edge_ad.guard import Guard, RateLimitedLog
from edge_ad.publish.client import configure_security
from edge_ad.publish.topics import Topics

__all__ = ["MAX_PAYLOAD", "VERDICTS_KEPT", "Feed", "drift_value"]

logger = logging.getLogger(__name__)

VERDICTS_KEPT = 200
MAX_PAYLOAD = 256 * 1024  # bytes; a station's messages are a few hundred bytes, anything this big is junk
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
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


class Feed:
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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._seen: deque[tuple[Any, Any]] = deque(maxlen=VERDICTS_KEPT)
        self.guard = Guard()
        self._log = RateLimitedLog(logger)
        self.status: dict[str, Any] | None = None
        self.stats: dict[str, Any] | None = None
        self.verdicts: deque[tuple[int, dict[str, Any]]] = deque(maxlen=VERDICTS_KEPT)
        self.drift: deque[float] = deque(maxlen=self.drift_points)
        self.last_ng: dict[str, Any] | None = None
        self.connected = False
        self.error: str | None = None
        self.junk: dict[str, int] = {}
        self.version = 0  # rises with every change of status, stats, drift or connection
        self.received = 0  # verdicts received: the number of the newest one

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in a background thread (returns at once; a broker that is down is retried)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the thread (within ``timeout_s``)."""
        self._stop.set()
        client = self._client
        if client is not None:
            client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            if self.guard.call("console feed connection", self._session):
                delay = RETRY_MIN_S  # it was connected: retry soon
            self._set_connected(False)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX_S)
        self._set_connected(False)

    def _session(self) -> bool:
        """One connection, looped until it drops or :meth:`stop`; whether it was established."""
        mqtt_config = self.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        try:
            configure_security(client, mqtt_config)
        except EdgeAdError as exc:
            self._set_error(str(exc))
            return False
        client.connect_timeout = mqtt_config.connect_timeout_s
        client.on_connect = self.guard.wrap("console feed on_connect", self._on_connect)
        client.on_message = self.guard.wrap("console feed on_message", self._on_message)
        self._client = client
        try:
            try:
                client.connect(mqtt_config.host, mqtt_config.port, keepalive=mqtt_config.keepalive_s)
            except OSError as exc:
                self._set_error(
                    f"mqtt: broker {mqtt_config.host}:{mqtt_config.port} not reachable ({exc.strerror or exc})"
                )
                return False
            was_connected = False
            while not self._stop.is_set():
                rc = client.loop(timeout=0.5)
                was_connected = was_connected or self.connected
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not self._stop.is_set() and self.connected:
                        self._set_error(f"mqtt: connection to {mqtt_config.host}:{mqtt_config.port} lost")
                    break
            return was_connected
        finally:
            self._client = None
            client.disconnect()

    def _set_connected(self, connected: bool) -> None:
        with self._lock:
            if self.connected != connected:
                self.connected = connected
                self.version += 1

    def _set_error(self, message: str) -> None:
        with self._lock:
            if self.error != message:
                logger.warning("console: %s", message)
                self.error = message
                self.version += 1

    # -- paho callbacks (the feed thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._set_error(f"mqtt: broker {self.config.mqtt.host}:{self.config.mqtt.port} refused: {reason_code}")
            return
        client.subscribe([(topic, 1) for topic in self._kind])
        with self._lock:
            self.error = None
        self._set_connected(True)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = self._kind.get(msg.topic)
        if kind is None:
            return
        try:
            if len(msg.payload) > MAX_PAYLOAD:
                raise ValueError(f"{len(msg.payload)} bytes")
            message = json.loads(msg.payload)
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
        with self._lock:
            if verdict.get("seq") is not None and key in self._seen:
                return
            self._seen.append(key)
            self.received += 1
            self.verdicts.append((self.received, verdict))
            if verdict["verdict"] == "OK" and (point := drift_value(verdict)) is not None:
                self.drift.append(round(point, 6))
                self.version += 1
            elif verdict["verdict"] == "NG":
                self.last_ng = verdict
                self.version += 1

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
