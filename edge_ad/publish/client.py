"""MQTT publisher: retained status with Last Will, QoS 1 verdicts, automatic reconnect."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.config import MqttConfig
from edge_ad.publish.payloads import status_payload, to_json, verdict_payload
from edge_ad.publish.topics import Topics
from edge_ad.types import Verdict

__all__ = ["MqttPublisher"]

logger = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes one station's status and verdicts.

    The Last Will (retained, QoS 1) says ``offline`` / ``connection lost``; every (re)connect
    republishes the current status; :meth:`stop` publishes ``offline`` / ``stopped`` (or the
    given reason) and waits for in-flight verdicts before disconnecting.
    QoS 1 messages published while the broker is unreachable are queued by paho and sent
    after reconnection.

    Args:
        config: The ``mqtt`` config section.
        station: Station name (second topic level).
    """

    def __init__(self, config: MqttConfig, station: str) -> None:
        self.config = config
        self.station = station
        self.topics = Topics(station=station, prefix=config.prefix)
        self._status: dict[str, Any] = status_payload(station, "online")
        self._connected = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._unacked: set[int] = set()  # mids of QoS 1 messages not yet acknowledged by the broker
        self._early_acks: set[int] = set()  # PUBACKs that arrived before publish() returned the mid
        self._acked = threading.Condition(self._lock)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"edge-ad-{station}",
            clean_session=True,
        )
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(
            self.topics.status(),
            to_json(status_payload(station, "offline", "connection lost")),
            qos=1,
            retain=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    # paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker %s:%d refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        logger.info("broker %s:%d connected", self.config.host, self.config.port)
        with self._lock:
            status = to_json(self._status)
        self._publish(self.topics.status(), status, qos=1, retain=True)
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)
            self._acked.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._stopping:
            logger.warning("broker connection lost (%s); reconnecting, verdicts are queued", reason_code)
        self._connected.clear()

    def start(self, wait: bool = True) -> bool:
        """Connect in the background; optionally wait up to ``connect_timeout_s`` for the first connection.

        Returns:
            Whether the broker is connected.
        """
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()
        if wait and not self._connected.wait(self.config.connect_timeout_s):
            logger.warning(
                "broker %s:%d not reachable after %.0f s; running anyway, verdicts are queued until it is",
                self.config.host,
                self.config.port,
                self.config.connect_timeout_s,
            )
        return self._connected.is_set()

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        return self._connected.is_set()

    def set_status(self, state: str, reason: str = "", **details: Any) -> None:
        """Replace the retained status and publish it now (or on the next connect)."""
        with self._lock:
            self._status = status_payload(self.station, state, reason, **details)  # type: ignore[arg-type]
            status = to_json(self._status)
        if self._connected.is_set():
            self._publish(self.topics.status(), status, qos=1, retain=True)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        # paho queues QoS 1 messages even while disconnected and resends them on reconnect;
        # the broker's PUBACK (on_publish) is what counts as delivered. paho calls on_publish
        # under its own lock, so publish() must not be called while holding ours.
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                else:
                    self._unacked.add(info.mid)

    def publish_verdict(self, verdict: Verdict) -> None:
        """Publish one verdict (QoS from config, never retained)."""
        self._publish(self.topics.verdict(), to_json(verdict_payload(verdict, self.station)), qos=self.config.qos)

    @property
    def unacknowledged(self) -> int:
        """QoS 1 messages the broker has not acknowledged yet."""
        with self._lock:
            return len(self._unacked)

    def stop(self, reason: str = "stopped", timeout_s: float = 10.0) -> None:
        """Publish the final status, flush queued verdicts, then disconnect."""
        state = "error" if reason not in ("stopped", "source exhausted") else "offline"
        self.set_status(state, reason)
        deadline = time.monotonic() + timeout_s
        with self._acked:
            while self._unacked and self._connected.is_set() and time.monotonic() < deadline:
                self._acked.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            unsent = len(self._unacked)
        if unsent:
            logger.warning("%d verdict(s) not acknowledged by the broker at shutdown", unsent)
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
