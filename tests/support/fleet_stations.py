"""Simulated stations for rollout tests: a paho client per station that acts like a daemon on the MQTT contract.

Each one publishes its retained status and stats with the daemon's own payload builders (validated against
the message models, so they cannot drift), verifies signed cmd/install and cmd/rollback commands with the
station's verifier, downloads the offered package over HTTP, checks its manifest hash and answers per
the contract. ``behaviour`` makes it fail on purpose.
"""

from __future__ import annotations

import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge_ad.bundle.package import read_package
from edge_ad.publish.messages import InstallCommand, RollbackCommand, adapter
from edge_ad.publish.payloads import stamp, stats_payload, status_payload, to_json, will_payload
from edge_ad.service.command_auth import CommandRejected, CommandVerifier
from tests.support.broker import Broker

__all__ = ["SimStation"]

Behaviour = Literal["ok", "fail_acceptance", "download_error", "ng_after_install", "silent"]


@dataclass
class SimStation:
    """One simulated station on ``broker`` (use as a context manager)."""

    broker: Broker
    name: str
    key: bytes
    prefix: str = "edge_ad"
    model: str = "tiny"
    version: str = "1"
    behaviour: Behaviour = "ok"
    ng_rate: float = 0.01
    ng_after_install: float = 0.3  # behaviour ng_after_install: the NG rate of the new version
    stats_interval_s: float = 0.2
    received: list[tuple[str, dict | None, float]] = field(default_factory=list)  # (command, opened body, when)
    replies: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run = uuid.uuid4().hex
        self.versions = [self.version]  # installed, in order
        self.active = self.version
        self.verifier = CommandVerifier(self.key, max_age_s=60)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.prefix}-{self.name}")
        self.client.will_set(self._topic("status"), to_json(will_payload(self.name, self.run)), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._stats = threading.Thread(target=self._stats_loop, daemon=True)

    def _topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.name}/{leaf}"

    def __enter__(self) -> SimStation:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise TimeoutError(f"{self.name} did not connect")
        self._stats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._publish("status", "status", status_payload(self.name, "offline", "stopped", run=self.run), retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        self._stats.join(2)

    def clear(self) -> None:
        """Remove the retained status and stats (so later tests on the same prefix do not see this station)."""
        for leaf in ("status", "stats"):
            self.client.publish(self._topic(leaf), b"", qos=1, retain=True).wait_for_publish(5)

    # what a daemon publishes
    def _publish(self, leaf: str, schema: str, payload: dict, retain: bool = False) -> None:
        adapter(schema).validate_python(payload)  # the shape the real station sends
        self.client.publish(self._topic(leaf), to_json(payload), qos=1, retain=retain)

    def _model(self) -> dict:
        return {"name": self.model, "version": self.active, "variant": "fp32", "precision": "f32"}

    def publish_status(self) -> None:
        """The retained online status, running the active version."""
        status = status_payload(self.name, "online", run=self.run, model=self._model(), device="CPU", threshold=1.0)
        self._publish("status", "status", status, retain=True)

    def _stats_loop(self) -> None:
        started, frames = time.time(), 0
        while not self._stop.wait(self.stats_interval_s):
            frames += 10
            with self._lock:
                bad = self.behaviour == "ng_after_install" and self.active != self.versions[0]
                rate = self.ng_after_install if bad else self.ng_rate
                fields = {"frames": frames, "ng": round(frames * rate), "fps": 50.0,
                          "latency_ms": {"p50": 2.0, "p99": 4.0}, "ng_rate": rate,
                          "uptime_s": round(time.time() - started, 3), "dropped_frames": 0, "camera": "online",
                          "device": "CPU", "model": self._model(), "spooled": 0}  # fmt: skip
            self._publish("stats", "stats", stats_payload(self.name, fields, run=self.run), retain=True)

    def _reply(self, command: str, payload: dict) -> None:
        payload = {"schema": 2, **payload, **stamp()}
        self.replies.append(payload)
        self._publish(f"cmd/{command}/result", f"{command}-result", payload)

    # what a daemon receives
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(self._topic("cmd/install"), 1), (self._topic("cmd/rollback"), 1)])
        self.publish_status()
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        command = msg.topic.rsplit("/", 1)[-1]
        threading.Thread(target=self._handle, args=(command, bytes(msg.payload)), daemon=True).start()

    def _open(self, command: str, payload: bytes, model: type) -> dict | None:
        try:
            body = self.verifier.open(payload)
        except CommandRejected as exc:
            self.received.append((command, None, time.time()))
            said = exc.body if isinstance(exc.body, dict) else {}
            self._reply(command, {"id": said.get("id"), "state": "rejected", "reason": str(exc)})
            return None
        self.received.append((command, body, time.time()))
        try:
            model.model_validate(body)
        except ValidationError as exc:
            self._reply(command, {"id": body.get("id"), "state": "rejected", "reason": str(exc).splitlines()[0]})
            return None
        return body

    def _handle(self, command: str, payload: bytes) -> None:
        if command == "install":
            body = self._open(command, payload, InstallCommand)
            if body is not None and self.behaviour != "silent":
                self._install(body)
        elif command == "rollback":
            body = self._open(command, payload, RollbackCommand)
            if body is not None:
                self._rollback(body)

    def _install(self, body: dict) -> None:
        said = {"id": body["id"], "rollout": body.get("rollout"), "offered": body["version"]}
        if body["bundle"] != self.model:
            self._reply("install", said | {"state": "rejected", "reason": f"bundle: this station runs {self.model}"})
            return
        self._reply("install", said | {"state": "downloading"})
        if self.behaviour == "download_error":
            self._reply("install", said | {"state": "error", "reason": "download: HTTP 503 from the file server"})
            return
        with urllib.request.urlopen(body["url"], timeout=10) as response:
            data = response.read(body["size"] + 1)
        self._reply("install", said | {"state": "verifying"})
        with tempfile.TemporaryDirectory() as tmp:
            downloaded = Path(tmp) / "package.tar"
            downloaded.write_bytes(data)
            package = read_package(downloaded)
        if len(data) != body["size"] or package.manifest_sha256 != body["manifest_sha256"]:
            self._reply("install", said | {"state": "failed", "reason": "the package is not the one offered"})
            return
        self._reply("install", said | {"state": "commissioning"})
        if self.behaviour == "fail_acceptance":
            reason = "acceptance: false rejects 20.0% on this station's acceptance set (gate 1.0%); nothing changed"
            self._reply("install", said | {"state": "failed", "reason": reason, "selftest": True, "acceptance": False})
            return
        with self._lock:
            previous, new = self.active, body["version"]  # a signed version keeps its number
            if new not in self.versions:
                self.versions.append(new)
            self.active = new
        reply = {"state": "installed", "version": new, "previous": previous, "active": True, "variant": "fp32"}
        self._reply("install", said | reply | {"selftest": True, "acceptance": True})
        time.sleep(0.2)  # the daemon swaps models a moment after the reply
        self.publish_status()

    def _rollback(self, body: dict) -> None:
        said = {"id": body["id"], "rollout": body.get("rollout")}
        with self._lock:
            if body["from_version"] != self.active:
                reason = f"from_version: v{body['from_version']} is not active (v{self.active} is); nothing changed"
                self._reply("rollback", said | {"state": "rejected", "reason": reason})
                return
            left = self.active
            self.active = self.versions[self.versions.index(left) - 1]
        self._reply("rollback", said | {"state": "rolled_back", "version": self.active, "previous": left})
        self.publish_status()

    def commands(self) -> list[str]:
        """The names of every command this station received (signed or not)."""
        return [name for name, _, _ in self.received]
