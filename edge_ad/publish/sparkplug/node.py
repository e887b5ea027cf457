"""The station as a Sparkplug B Edge Node: a paho client, Will (NDEATH) and thread of its own.

One thread does everything of the Sparkplug session: it connects (bdSeq and Will first), runs paho's
network loop, publishes births, data and the final NDEATH, and answers rebirth commands. A
reconnect therefore cannot slip a DDATA in before the new session's NBIRTH and DBIRTH, and the seq
counter needs no lock. The daemon only records values (:meth:`EdgeNode.update` never blocks); the
JSON publisher never waits for or hears of this client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_ad.config import MqttConfig, SparkplugConfig
from edge_ad.guard import Guard, RateLimitedLog
from edge_ad.publish.client import configure_security
from edge_ad.publish.sparkplug import payloads
from edge_ad.publish.sparkplug.bdseq import BDSEQ_FILE, BdSeqCounter
from edge_ad.publish.sparkplug.metrics import (
    BY_NAME,
    Value,
    camera_values,
    model_values,
    stats_values,
    verdict_values,
)
from edge_ad.publish.sparkplug.payloads import Stamped
from edge_ad.publish.topics import SparkplugTopics
from edge_ad.types import Verdict

__all__ = ["MAX_PENDING", "EdgeNode"]

logger = logging.getLogger(__name__)

MAX_PENDING = 10_000  # updates waiting for the thread; beyond this the oldest are dropped (counted)
LOOP_S = 0.05  # paho network loop timeout: the longest an update waits to go out


def _ms(ts: float) -> int:
    return round(ts * 1000)


class EdgeNode:
    """Sparkplug B 3.0 Edge Node ``<group_id>/<edge_node_id>`` with one device (the station's metrics).

    Construct it (no network), record the current values, then :meth:`start`; :meth:`stop` at shutdown
    publishes NDEATH and disconnects. Births carry every metric (name, alias, datatype); DDATA the
    changed ones and every verdict, by alias. ``seq`` is 0 in NBIRTH and counts 1..255, 0, ... over
    every following message. bdSeq goes up by one for every new CONNECT and is kept in the state
    directory. An NCMD ``Node Control/Rebirth`` = true is answered with NBIRTH + DBIRTH (same bdSeq).

    Args:
        config: The ``sparkplug`` config section.
        mqtt_config: Broker address, credentials and TLS (shared with the JSON client; the session is not).
        station: Station name (the default Edge Node ID).
        state_dir: Where bdSeq is kept (``service.state_dir``).
        guard: Runs the thread's work and every paho callback: an exception is counted, never fatal.
        retry_s: First and longest wait between connection attempts (doubling in between).
    """

    def __init__(
        self,
        config: SparkplugConfig,
        mqtt_config: MqttConfig,
        station: str,
        state_dir: Path,
        guard: Guard | None = None,
        retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.mqtt_config = mqtt_config
        self.guard = guard or Guard()
        self.topics = SparkplugTopics(config.group_id, config.edge_node_id_for(station), config.device_id)
        self.bdseq_counter = BdSeqCounter(state_dir / BDSEQ_FILE)
        self.bdseq: int | None = None  # of the latest CONNECT (and so of the current session's NBIRTH)
        self.births = 0
        self.messages = 0
        self.dropped = 0
        self.rejected = 0
        self._retry_min, self._retry_max = retry_s
        self._retry = self._retry_min
        self._next_attempt = 0.0
        self._connect_sent = False
        self._born = False  # NBIRTH and DBIRTH went out in this session: DDATA may follow
        self._broken = False  # the network loop failed: reconnect, even if paho left a socket
        self._seq = 0
        self._outage_logged = False  # one warning per outage, however many attempts it takes
        self._refused: str | None = None
        self._stop_timeout_s = 2.0
        self._lock = threading.Lock()  # guards _latest, _pending and dropped
        self._latest: dict[str, Stamped] = {}
        self._pending: deque[tuple[list[tuple[str, Value]], int]] = deque()
        self._closing = threading.Event()
        self._rejections = RateLimitedLog(logger)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=config.client_id_for(station), clean_session=True
        )
        configure_security(self.client, mqtt_config)
        self.client.suppress_exceptions = True  # second layer: paho logs what would escape the guard
        self.client.on_connect = self.guard.wrap("sparkplug connect", self._on_connect)
        self.client.on_disconnect = self.guard.wrap("sparkplug disconnect", self._on_disconnect)
        self.client.message_callback_add(self.topics.node("NCMD"), self.guard.wrap("sparkplug NCMD", self._on_ncmd))
        self._thread = threading.Thread(target=self._run, name="sparkplug", daemon=True)

    # values: any thread
    def update(self, values: Mapping[str, Value], ts: float | None = None) -> None:
        """Record device metric values measured at ``ts`` (default now); changed ones go out as one DDATA.

        Thread-safe and never blocks. Metrics flagged ``event`` (the verdict's) are sent every time.
        """
        stamp = _ms(time.time() if ts is None else ts)
        with self._lock:
            changed = []
            for name, value in values.items():
                old = self._latest.get(name)
                if BY_NAME[name].event or old is None or old[0] != value:
                    changed.append((name, value))
                self._latest[name] = (value, stamp)
            if changed:
                if len(self._pending) >= MAX_PENDING:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append((changed, stamp))

    def verdict(self, verdict: Verdict) -> None:
        """One verdict (stamped with its capture time)."""
        self.update(verdict_values(verdict), verdict.ts)

    def model(self, model: dict[str, str], threshold: float) -> None:
        """The model that judges (at start and after a swap)."""
        self.update(model_values(model, threshold))

    def camera(self, state: str) -> None:
        """The camera's state."""
        self.update(camera_values(state))

    def stats(self, fps: float, ng_rate: float) -> None:
        """The rolling statistics."""
        self.update(stats_values(fps, ng_rate))

    def counters(self) -> dict[str, Any]:
        """For the JSON stats: session up, bdSeq, births, messages sent, updates dropped, NCMDs rejected."""
        with self._lock:
            dropped = self.dropped
        return {
            "online": self._born,
            "bdseq": self.bdseq,
            "births": self.births,
            "messages": self.messages,
            "dropped": dropped,
            "rejected": self.rejected,
        }

    # lifecycle: the daemon's thread
    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        self.client.connect_async(self.mqtt_config.host, self.mqtt_config.port, keepalive=self.mqtt_config.keepalive_s)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish NDEATH (a clean stop: the broker drops the Will) and disconnect, waiting up to ``timeout_s``."""
        self._stop_timeout_s = max(0.5, timeout_s - 1.0)
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # the Sparkplug thread
    def _run(self) -> None:
        while not self._closing.is_set():
            if self.guard.call("sparkplug", self._step) is None:
                self._closing.wait(0.5)  # it failed: try again, without spinning
        self.guard.call("sparkplug stop", self._goodbye)

    def _step(self) -> bool:
        if self.client.socket() is None or self._broken:
            self._born = False
            with self._lock:
                self._pending.clear()  # nobody to send them to; the next births carry the latest values
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                self._closing.wait(min(wait, 0.1))
            else:
                self._connect()
            return True
        rc = self.client.loop(timeout=LOOP_S)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # paho closed the socket (and said so), or left a broken one
            self._broken = True
            if self._next_attempt <= time.monotonic():  # not yet scheduled by _on_disconnect
                self._retry_later(f"connection lost ({rc.name})")
            return True
        if self.client.is_connected():
            if not self._born:  # a new session, or a rebirth request
                self._birth()
            self._send_pending()
        return True

    def _connect(self) -> None:
        self._broken = False  # reconnect() closes what is left of the old socket
        if self.bdseq is None or self._connect_sent:
            self.bdseq = self.bdseq_counter.next()
            self._connect_sent = False
        will = payloads.ndeath(self.bdseq, _ms(time.time()))
        self.client.will_set(self.topics.node("NDEATH"), will, qos=1, retain=False)
        try:
            self.client.reconnect()
        except OSError as exc:  # no CONNECT went out: the next attempt keeps this bdSeq
            host, port = self.mqtt_config.host, self.mqtt_config.port
            self._retry_later(f"broker {host}:{port} not reachable ({exc.strerror or exc})")
            return
        self._connect_sent = True

    def _retry_later(self, reason: str) -> None:
        if not self._outage_logged:
            logger.warning("sparkplug: %s; retrying (the JSON topics are not affected)", reason)
            self._outage_logged = True
        self._next_attempt = time.monotonic() + self._retry
        self._retry = min(self._retry * 2, self._retry_max)

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=0, retain=False)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.messages += 1

    def _birth(self) -> None:
        """NBIRTH (seq 0) and DBIRTH (seq 1) with the latest values; updates queued before are in them."""
        assert self.bdseq is not None
        now = _ms(time.time())
        with self._lock:
            current = dict(self._latest)
            self._pending.clear()
        node = payloads.nbirth(self.bdseq, 0, now)
        device = payloads.dbirth(current, 1, now)
        self._publish(self.topics.node("NBIRTH"), node)
        self._publish(self.topics.device("DBIRTH"), device)
        self._seq = 1
        self._born = True
        self.births += 1
        logger.debug("sparkplug: NBIRTH + DBIRTH (bdSeq %d)", self.bdseq)

    def _send_pending(self) -> None:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        now = _ms(time.time())
        for values, stamp in batch:
            seq = (self._seq + 1) % 256
            self._publish(self.topics.device("DDATA"), payloads.ddata(values, seq, now, stamp))
            self._seq = seq

    # paho callbacks: on this thread, inside client.loop()
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # the broker closes the connection: _on_disconnect schedules the retry
            self._refused = f"broker refused the session ({reason_code})"
            return
        self._refused = None
        self._retry = self._retry_min
        self._outage_logged = False
        node = f"{self.topics.group_id}/{self.topics.edge_node_id}"
        logger.info("sparkplug: connected as Edge Node %s (bdSeq %d)", node, self.bdseq)
        client.subscribe(self.topics.node("NCMD"), qos=1)  # before NBIRTH (spec 3.0, section 5.3)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_born, self._born = self._born, False
        if not self._closing.is_set():
            self._retry_later("connection lost" if was_born else self._refused or f"session ended ({reason_code})")

    def _on_ncmd(self, client, userdata, msg) -> None:
        if msg.retain:  # an old command: a host sends NCMD with retain false
            self._reject("retained NCMD ignored")
            return
        try:
            rebirth = payloads.rebirth_requested(msg.payload)
        except ValueError as exc:
            self._reject(str(exc))
            return
        if rebirth:
            logger.debug("sparkplug: rebirth requested")
            self._born = False  # no DDATA until the births have gone out again (right after this loop)

    def _reject(self, cause: str) -> None:
        self.rejected += 1
        self._rejections.warning(cause, "sparkplug: %s", cause)

    def _goodbye(self) -> None:
        if self.client.is_connected() and self.bdseq is not None:
            death = payloads.ndeath(self.bdseq, _ms(time.time()))
            info = self.client.publish(self.topics.node("NDEATH"), death, qos=1, retain=False)
            deadline = time.monotonic() + self._stop_timeout_s
            while not info.is_published() and self.client.socket() is not None and time.monotonic() < deadline:
                self.client.loop(timeout=LOOP_S)
            logger.info("sparkplug: NDEATH sent (bdSeq %d), disconnecting", self.bdseq)
        self._born = False
        self.client.disconnect()
