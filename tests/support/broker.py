"""A private mosquitto per test session and a paho subscriber that records messages."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.bench.mosquitto import Broker, start_mosquitto

__all__ = ["Broker", "Recorder", "Subscriber", "password_file", "start_mosquitto"]


@dataclass
class Subscriber:
    """A QoS 1 subscription to ``topic`` that keeps what :meth:`_record` makes of each message, in arrival order."""

    broker: Broker
    topic: str = "edge_ad/#"
    setup: object = None  # callable(client) for TLS/credentials
    session: str | None = None  # a persistent session (the broker queues QoS 1 messages while away)
    messages: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.session or f"{type(self).__name__.lower()}-{time.monotonic_ns()}",
            clean_session=self.session is None,
        )
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def _record(self, msg: mqtt.MQTTMessage) -> object:
        raise NotImplementedError

    def _on_message(self, client, userdata, msg) -> None:
        item = self._record(msg)
        with self._lock:
            self.messages.append(item)

    def __enter__(self):
        if callable(self.setup):
            self.setup(self.client)
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError(f"{type(self).__name__} did not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Poll until ``predicate(self)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)


@dataclass
class Recorder(Subscriber):
    """Subscribes to ``<prefix>/#`` and keeps (topic, payload dict, retained) in arrival order."""

    def _record(self, msg: mqtt.MQTTMessage) -> tuple[str, dict, bool]:
        try:
            payload = json.loads(msg.payload)
        except (ValueError, RecursionError):  # the junk a hostile-input test sends to the trigger topic
            payload = {"_raw": bytes(msg.payload)}
        return msg.topic, payload, bool(msg.retain)

    def on(self, leaf: str) -> list[dict]:
        """Payloads received on topics ending with ``/leaf``."""
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith("/" + leaf)]


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file at ``path`` with ``users`` (name: password), hashed by ``mosquitto_passwd``."""
    path.touch()
    for name, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), name, password], check=True, capture_output=True)
    path.chmod(0o644)  # mosquitto drops to its own user unless run as root
    return path
