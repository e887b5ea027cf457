"""The shipped mosquitto ACL (docs/examples/mosquitto/): each station publishes only under its own prefix.

A real mosquitto runs the shipped configuration's authentication lines and ACL file unchanged (only
the file paths are replaced); a real daemon runs under it too, so an ACL that is too tight fails here.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker, Recorder, password_file, start_mosquitto
from tests.support.station import station_config
from tests.support.tiny_bundle import good_image, write_frames

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mosquitto"
USERS = {"line-a": "pw-a", "line-b": "pw-b", "_consumer": "pw-c", "_operator": "pw-o"}
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87
KEY = "9f2c4e0a7b1d3f5e9f2c4e0a7b1d3f5e"


def _shipped_auth(passwd: Path, acl: Path) -> str:
    """The shipped mosquitto.conf up to its listener (authentication and ACL), with this test's file paths."""
    lines = []
    for line in (SHIPPED / "mosquitto.conf").read_text().splitlines():
        if line.startswith("listener"):
            break
        if line.strip() and not line.startswith(("#", "per_listener_settings")):  # start_mosquitto writes that
            lines.append(line.replace("/etc/mosquitto/edge_ad.passwd", str(passwd)).replace(
                "/etc/mosquitto/edge_ad.acl", str(acl)))  # fmt: skip
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """mosquitto with the shipped ACL file and auth lines, and the users of USERS."""
    workdir = tmp_path_factory.mktemp("acl-broker")
    passwd = password_file(workdir / "passwd", USERS)
    extra = _shipped_auth(passwd, SHIPPED / "edge_ad.acl")
    assert "allow_anonymous false" in extra and "acl_file" in extra
    with start_mosquitto(workdir, extra=extra) as broker:
        yield broker


class _Client:
    """A logged-in paho client that remembers PUBACK and SUBACK reason codes."""

    def __init__(self, broker: Broker, user: str, protocol: int = mqtt.MQTTv5) -> None:
        self.acks: dict[int, int] = {}  # mid: PUBACK reason code
        self.subacks: dict[int, list[int]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}",
                                  protocol=protocol)  # fmt: skip
        self.client.username_pw_set(user, USERS[user])
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(mid, [x.value for x in codes])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(5), f"{user} could not log in"

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish QoS 1 and wait for the PUBACK: its reason code (≥ 128 refused; always 0 for MQTT 3.1.1)."""
        mid = self.client.publish(topic, payload, qos=1).mid
        deadline = time.monotonic() + 5
        while mid not in self.acks:
            assert time.monotonic() < deadline, f"no PUBACK for {topic}"
            time.sleep(0.01)
        return self.acks[mid]

    def subscribe(self, topic: str) -> int:
        """Subscribe QoS 1 and wait for the SUBACK: its code (≥ 128 refused)."""
        _, mid = self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while mid not in self.subacks:
            assert time.monotonic() < deadline, f"no SUBACK for {topic}"
            time.sleep(0.01)
        return self.subacks[mid][0]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def _login(broker: Broker, user: str, protocol: int = mqtt.MQTTv5) -> Iterator[_Client]:
    client = _Client(broker, user, protocol)
    try:
        yield client
    finally:
        client.close()


def _consumer(broker: Broker) -> Recorder:
    return Recorder(broker, topic="edge_ad/#", setup=lambda c: c.username_pw_set("_consumer", USERS["_consumer"]))


def test_a_station_publishes_under_its_own_prefix_and_consumers_read_it(acl_broker):
    with _consumer(acl_broker) as rec, _login(acl_broker, "line-a") as a:
        assert a.publish("edge_ad/line-a/verdict", b'{"seq": 1}') < 128
        assert a.publish("edge_ad/line-a/cmd/recalibrate/result", b'{"id": "r1"}') < 128
        assert rec.wait_for(lambda r: len(r.messages) == 2)
    assert [t for t, _, _ in rec.messages] == ["edge_ad/line-a/verdict", "edge_ad/line-a/cmd/recalibrate/result"]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt3.1.1", "mqtt5"])
@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("line-a", "edge_ad/line-b/verdict"),  # a station posing as another
        ("line-a", "edge_ad/line-b/status"),
        ("line-a", "edge_ad/line-b/cmd/recalibrate/result"),
        ("line-a", "edge_ad/line-b/cmd/install"),  # a station commanding another
        ("_consumer", "edge_ad/line-a/cmd/recalibrate"),  # consumers only read
        ("_operator", "edge_ad/line-a/verdict"),  # the operator commands, it never speaks for a station
    ],
)
def test_a_publish_outside_ones_rights_is_not_delivered(acl_broker, user, topic, protocol):
    with _consumer(acl_broker) as rec, _login(acl_broker, user, protocol) as sender, _login(acl_broker, "line-a") as a:
        code = sender.publish(topic, b'{"forged": true}')
        # mosquitto drops it silently for MQTT 3.1.1 (its PUBACK has no reason code); MQTT 5 says why
        assert code == (NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else 0)
        a.publish("edge_ad/line-a/verdict", b'{"marker": true}')  # after the forged one from the broker's view
        assert rec.wait_for(lambda r: any(t == "edge_ad/line-a/verdict" for t, _, _ in r.messages))
    assert [t for t, _, _ in rec.messages] == ["edge_ad/line-a/verdict"], "the forged message was delivered"


def test_a_station_reads_only_what_is_addressed_to_it(acl_broker):
    """mosquitto 2.0 grants the SUBACK of a topic the ACL does not let one read, and then delivers nothing on it."""
    with _login(acl_broker, "line-a") as a, _login(acl_broker, "line-b") as b, _login(acl_broker, "_operator") as op:
        got: dict[str, list[str]] = {"line-a": [], "line-b": []}
        for client, name in ((a, "line-a"), (b, "line-b")):
            client.client.on_message = lambda c, u, msg, name=name: got[name].append(msg.topic)
        for topic in ("edge_ad/line-b/cmd/recalibrate", "edge_ad/line-b/trigger", "edge_ad/+/cmd/+", "edge_ad/#"):
            assert a.subscribe(topic) in (1, NOT_AUTHORIZED), topic
        assert a.subscribe("edge_ad/line-a/cmd/recalibrate") == 1  # granted QoS 1
        assert b.subscribe("edge_ad/line-b/cmd/recalibrate") == 1
        assert op.publish("edge_ad/line-b/cmd/recalibrate", b"{}") < 128
        assert op.publish("edge_ad/line-a/cmd/recalibrate", b"{}") < 128
        deadline = time.monotonic() + 5
        while not (got["line-a"] and got["line-b"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # anything else on its way
    assert got["line-b"] == ["edge_ad/line-b/cmd/recalibrate"]
    # (one copy per matching subscription: edge_ad/# and edge_ad/+/cmd/+ also match its own command)
    assert set(got["line-a"]) == {"edge_ad/line-a/cmd/recalibrate"}, "station A read a command meant for B"


def test_a_real_daemon_runs_under_the_acl(acl_broker, tiny_models, tmp_path):
    """Last Will, retained status, stats, verdicts, the command subscription and its replies: all allowed."""
    (tmp_path / "password").write_text(USERS["line-a"] + "\n")
    (tmp_path / "command.key").write_text(KEY + "\n")
    frames = write_frames(tmp_path / "frames", [good_image(s) for s in range(3)])
    config = station_config(
        tmp_path, str(frames), tiny_models / "tiny", acl_broker.port, station="line-a",
        camera={"fps": 5, "loop": True},
        mqtt={"username": "line-a", "password_file": str(tmp_path / "password")},
        recalibration={"mqtt_command": True}, commands={"secret_file": str(tmp_path / "command.key")},
    )  # fmt: skip
    with _consumer(acl_broker) as rec:
        proc = subprocess.Popen([sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 2 and r.on("stats"), timeout=30), rec.messages
            assert any(s["state"] == "online" for s in rec.on("status"))
            with _login(acl_broker, "_operator") as operator:
                operator.publish("edge_ad/line-a/cmd/recalibrate", b'{"unsigned": true}')
            assert rec.wait_for(lambda r: r.on("result"), timeout=10), "no reply to the command"
            proc.send_signal(signal.SIGKILL)  # the broker publishes the Last Will
            proc.wait(10)
            assert rec.wait_for(lambda r: any(s.get("reason") == "connection lost" for s in r.on("status")))
        finally:
            if proc.poll() is None:
                proc.kill()
            stderr = proc.communicate()[1]
    assert "refused" not in stderr and "not authori" not in stderr.lower(), stderr[-2000:]
    assert all(t.startswith("edge_ad/line-a/") for t, _, _ in rec.messages)
