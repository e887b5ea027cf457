"""A private mosquitto per test session and a paho subscriber that records messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.net import free_port, wait_for_port

__all__ = ["Broker", "Recorder", "start_mosquitto"]


@dataclass(frozen=True)
class Broker:
    """Address of a running broker."""

    host: str
    port: int
    process: subprocess.Popen


@contextmanager
def start_mosquitto(workdir: Path, port: int | None = None, extra: str = "", persist: bool = False) -> Iterator[Broker]:
    """Start mosquitto on a (free) loopback port with a temp config; stop our own pid afterwards.

    ``extra`` lines are appended to the listener's configuration (TLS, password file...).
    ``persist`` keeps sessions and queued QoS 1 messages in ``workdir`` across a restart.
    """
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (done by scripts/setup.sh)")
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    auth = "" if "allow_anonymous" in extra else "allow_anonymous true\n"
    if os.geteuid() == 0:  # as root mosquitto drops to its own user, who cannot read pytest's 0700 temp dirs
        auth += "user root\n"
    persistence = f"persistence true\npersistence_location {workdir}/\n" if persist else "persistence false\n"
    conf.write_text(f"per_listener_settings false\nlistener {port} 127.0.0.1\n{auth}{persistence}{extra}")
    log = (workdir / "mosquitto.log").open("w")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
        yield Broker("127.0.0.1", port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass
class Recorder:
    """Subscribes to ``<prefix>/#`` and keeps (topic, payload dict, retained) in arrival order."""

    broker: Broker
    topic: str = "edge_ad/#"
    setup: object = None  # callable(client) for TLS/credentials
    session: str | None = None  # a persistent session (the broker queues QoS 1 messages while away)
    messages: list[tuple[str, dict, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.session or f"recorder-{time.monotonic_ns()}",
            clean_session=self.session is None,
        )
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:  # e.g. the junk a hostile-input test sends to the trigger topic
            payload = {"_raw": bytes(msg.payload)}
        with self._lock:
            self.messages.append((msg.topic, payload, bool(msg.retain)))

    def __enter__(self) -> Recorder:
        if callable(self.setup):
            self.setup(self.client)
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("recorder did not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, leaf: str) -> list[dict]:
        """Payloads received on topics ending with ``/leaf``."""
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith("/" + leaf)]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Poll until ``predicate(self)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)
