"""A tool's background MQTT subscription: connect, subscribe, reconnect with a growing delay, never die.

The base of the console's feed (one station) and the fleet view (every station). It connects like the
command-line tools (``mqtt`` section: host, port, TLS, credentials) in a thread of its own, retries a
broker that is down or went away after 1 s, doubling to 30 s, and hands every message to
:meth:`Subscriber.on_message`; a callback that raises is logged by the guard, never the end of the
thread. ``connected``, ``error`` and ``version`` (rising with every change) are for readers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_ad.config import MqttConfig
from edge_ad.errors import EdgeAdError
from edge_ad.guard import Guard
from edge_ad.publish.client import configure_security

__all__ = ["RETRY_MAX_S", "RETRY_MIN_S", "Subscriber"]

logger = logging.getLogger(__name__)

RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0


class Subscriber:
    """Subscribes to ``topics`` (QoS 1) on the broker of ``mqtt_config`` in a thread (none without a config).

    Args:
        mqtt_config: Where to connect; None: never connects (a view fed by hand).
        topics: The subscriptions.
        name: The thread's name and what log lines and guard reports say.
    """

    def __init__(self, mqtt_config: MqttConfig | None, topics: Sequence[str], name: str) -> None:
        self.mqtt = mqtt_config
        self.topics = tuple(topics)
        self.name = name
        self._lock = threading.Lock()  # also guards the subclass's state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()
        self._failed = threading.Event()
        self.guard = Guard()
        self.connected = False
        self.error: str | None = None  # the latest connection problem (None while connected)
        self.version = 0  # rises with every change

    def on_message(self, topic: str, payload: bytes) -> None:
        """One message on a subscribed topic (the subscriber's thread); subclasses keep what they need."""

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the connection thread runs."""
        return self._thread is not None

    def start(self) -> None:
        """Connect in a background thread (returns at once; a broker that is down is retried)."""
        with self._lock:
            if self._thread is not None or self.mqtt is None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the thread (within ``timeout_s``)."""
        self._stop.set()
        client = self._client
        if client is not None:
            client.disconnect()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the subscriptions are acknowledged (True) or the first attempt failed or timed out (False)."""
        deadline = time.monotonic() + timeout_s
        while not self._subscribed.is_set() and not self._failed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._subscribed.wait(min(left, 0.05))
        return self._subscribed.is_set()

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            if self.guard.call(f"{self.name} connection", self._session):
                delay = RETRY_MIN_S  # it was connected: retry soon
            self._set_connected(False)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX_S)
        self._set_connected(False)

    def _session(self) -> bool:
        """One connection, looped until it drops or :meth:`stop`; whether it was established."""
        config = self.mqtt
        assert config is not None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        try:
            configure_security(client, config)
        except EdgeAdError as exc:
            self._set_error(str(exc))
            return False
        client.connect_timeout = config.connect_timeout_s
        client.on_connect = self.guard.wrap(f"{self.name} on_connect", self._on_connect)
        client.on_subscribe = self.guard.wrap(f"{self.name} on_subscribe", self._on_subscribe)
        client.on_message = self.guard.wrap(f"{self.name} on_message", self._on_message)
        self._client = client
        try:
            try:
                client.connect(config.host, config.port, keepalive=config.keepalive_s)
            except OSError as exc:
                self._set_error(
                    f"mqtt: broker {config.host}:{config.port} not reachable ({exc.strerror or exc}); "
                    "check the address and that the broker runs"
                )
                return False
            was_connected = False
            while not self._stop.is_set():
                rc = client.loop(timeout=0.5)
                was_connected = was_connected or self.connected
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not self._stop.is_set() and self.connected:
                        self._set_error(f"mqtt: connection to {config.host}:{config.port} lost")
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
            changed = self.error != message
            self.error = message
            if changed:
                self.version += 1
        if changed:
            logger.warning("%s: %s", self.name, message)
        self._failed.set()

    # -- paho callbacks (the subscriber's thread) ------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            assert self.mqtt is not None
            self._set_error(f"mqtt: broker {self.mqtt.host}:{self.mqtt.port} refused the connection: {reason_code}")
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        with self._lock:
            self.error = None
        self._set_connected(True)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        refused = [topic for topic, code in zip(self.topics, reason_codes, strict=False) if code.is_failure]
        if refused:
            self._set_error(f"mqtt: the broker refused the subscription to {', '.join(refused)} (check its ACL)")
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho decodes the topic lazily
            self.on_message("", bytes(msg.payload))
            return
        self.on_message(topic, bytes(msg.payload))
