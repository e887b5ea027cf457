"""The JSON topics as an integrator reads them (issue #21): birth and death of a run, stats read with status,
every trigger answered (ERROR when it gets no verdict) with its id's JSON type, a persistent session that keeps
triggers across a lost connection, and MQTT 5 answers on the sender's Response Topic. Real daemon, real mosquitto."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_ad.service.command_auth import sign_command
from tests.support.broker import Broker, Recorder
from tests.support.messages import check_message
from tests.support.proxy import clean_session, cuttable_proxy, mqtt_level
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image, write_frames

pytestmark = pytest.mark.integration
KEY = "7c1d9e3a5b2f4c6e8a0d1f3b5c7e9a2d"


def _frames(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames", [good_image(900), good_image(901), defect_image(902)])


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    return stderr


def _will(rec: Recorder) -> bool:
    return any(s["reason"] == "connection lost" for s in rec.on("status"))


def _answers(rec: Recorder, part: object) -> list[dict]:
    """Answers on the verdict topic to trigger ``part`` (compared with its JSON type), de-duplicated as a consumer
    must: a message in flight when the connection drops is sent again (by seq; an ERROR has none: by its id)."""
    first: dict[object, dict] = {}
    for v in rec.on("verdict"):
        if "trigger" in v and json.dumps(v["trigger"]["id"]) == json.dumps(part):
            first.setdefault(v.get("seq", v["verdict"]), v)
    return list(first.values())


def test_a_run_is_born_and_dies_and_its_stats_are_read_with_its_status(tiny_models, mosquitto, tmp_path):
    station = "lifecycle"
    sections = {"station": station, "camera": {"fps": 20, "loop": True}, "service": {"stats_interval_s": 0.5}}
    config = station_config(
        tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port, **sections, mqtt={"protocol": "5"}
    )  # fmt: skip  (retained stats expire after 2 s)
    topic = f"edge_ad/{station}/#"
    with Recorder(mosquitto, topic=topic) as rec:
        proc = start_daemon(config)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 6 and r.on("stats"), timeout=60), proc.stderr
        mqtt_publish.single(f"edge_ad/{station}/trigger", b'{"id": 4711}', qos=1, port=mosquitto.port)
        assert rec.wait_for(lambda r: _answers(r, 4711), timeout=10), "a free-run station must answer a trigger"
        proc.kill()
        proc.wait(10)
        assert rec.wait_for(_will, timeout=10)
    birth = next(s for s in rec.on("status") if s["state"] == "online")
    run = birth["run"]
    assert len(run) == 32 and birth["ts"] and birth["time"]
    (refused,) = _answers(rec, 4711)
    assert (refused["verdict"], refused["error"], refused["run"]) == ("ERROR", "mode", run)
    assert "free_run" in refused["reason"]
    death = rec.on("status")[-1]  # the Will: no time (the broker sends it when it notices), the run it ends
    assert death == {"schema": 2, "station": station, "run": run, "state": "offline", "reason": "connection lost"}
    verdicts = rec.on("verdict")
    for message in rec.messages:
        check_message(message[0].rsplit("/", 1)[1], message[1])
    judged = [v for v in verdicts if v["verdict"] != "ERROR"]
    assert {v["run"] for v in judged} == {run} and all(v["model"] == birth["model"] for v in judged)
    assert all(round(v["ts"] * 1000) % 1000 == int(v["time"][-4:-1]) for v in judged)  # one millisecond, both
    assert all(v["threshold"] == birth["threshold"] for v in judged)  # one rounding rule on every topic
    assert all((v["score_norm"] >= 0.5) == (v["verdict"] == "NG") for v in judged)
    assert {v["verdict"] for v in judged} == {"OK", "NG"} and not any("replayed" in v for v in judged)

    time.sleep(2.5)  # MQTT 5: the killed run's retained stats expire 3 stats periods (2 s) after the last one
    with Recorder(mosquitto, topic=topic) as late:  # what a consumer that subscribes after the crash sees
        assert late.wait_for(lambda r: r.on("status"))
        time.sleep(0.5)
    assert late.on("stats") == [], "the broker dropped the stats nobody refreshes: none say camera online"
    assert (late.on("status")[-1]["state"], late.on("status")[-1]["run"]) == ("offline", run)

    again = station_config(tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port,
                           **{**sections, "service": {"stats_interval_s": 0.5, "max_frames": 5}},
                           mqtt={"protocol": "3.1.1"})  # fmt: skip
    with Recorder(mosquitto, topic=topic) as rec:
        done = edge_ad("run", "--config", str(again))
        assert done.returncode == 0, done.stderr
        assert rec.wait_for(lambda r: r.on("status")[-1]["reason"] == "stopped")
        assert rec.wait_for(lambda r: r.on("stats")[-1]["frames"] == 5)
    reborn = next(s for s in rec.on("status") if s["state"] == "online")
    stopped = rec.on("status")[-1]
    assert reborn["run"] != run and stopped["run"] == reborn["run"] and stopped["ts"] >= reborn["ts"]
    final = rec.on("stats")[-1]
    assert final["run"] == reborn["run"] and final["stale"] is True, "a clean stop marks its last stats stale"
    assert not any("stale" in s for s in rec.on("stats")[:-1])
    for message in rec.messages:
        check_message(message[0].rsplit("/", 1)[1], message[1])
    with Recorder(mosquitto, topic=topic) as late:  # MQTT 3.1.1, clean stop: the marked stats stay retained
        assert late.wait_for(lambda r: r.on("status") and r.on("stats"))
    assert (late.on("stats")[-1]["run"], late.on("stats")[-1]["stale"]) == (reborn["run"], True)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_triggers_are_answered_and_survive_a_lost_connection(tiny_models, mosquitto, tmp_path, protocol):
    """Broker up, the station's network cut: a trigger sent meanwhile is answered after the reconnect. A trigger
    kept for a station that was dead (unknown age) is answered ERROR expired, never with a later part's frame."""
    station = f"session-{protocol.replace('.', '')}"
    trigger = f"edge_ad/{station}/trigger"
    send = {"qos": 1, "hostname": mosquitto.host, "port": mosquitto.port}
    with cuttable_proxy(mosquitto.port) as proxy, Recorder(mosquitto, topic=f"edge_ad/{station}/#") as rec:
        config = station_config(
            tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", proxy.port, station=station,
            camera={"fps": 20, "loop": True}, mqtt={"protocol": protocol},
            service={"mode": "triggered", "trigger_timeout_s": 20, "stats_interval_s": 0.5},
        )  # fmt: skip
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: any(s["state"] == "online" for s in r.on("status")), timeout=60)
            for payload in (b'{"id": 4711}', b'{"id": "4711"}', b'{"id": "x", "evil": 1}', b"garbage"):
                mqtt_publish.single(trigger, payload, **send)
            assert rec.wait_for(lambda r: _answers(r, 4711) and _answers(r, "4711") and _answers(r, "x"))
            run = rec.on("status")[0]["run"]
            proxy.cut()  # the broker sees the connection end: the Will
            assert rec.wait_for(_will, timeout=10)
            mqtt_publish.single(trigger, b'{"id": "while-away"}', **send)  # kept in the station's session
            time.sleep(0.5)
            proxy.restore()
            assert rec.wait_for(lambda r: _answers(r, "while-away"), timeout=30), "lost with the connection"
            assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "online")  # born again, same run
            assert rec.on("status")[-1]["run"] == run
        except BaseException:
            proc.kill()
            raise
        proc.kill()  # dead: the broker keeps its session and what is sent to it
        proc.wait(10)
        dead = [f"while-dead-{i}" for i in range(60)]  # more than the broker hands over before the SUBACK (20)
        mqtt_publish.multiple(
            [(trigger, json.dumps({"id": i}), 1, False) for i in dead], hostname=mosquitto.host, port=mosquitto.port
        )
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: all(_answers(r, i) for i in dead), timeout=60), "lost with the dead station"
        finally:
            _stop(proc)
    assert [v["verdict"] for v in _answers(rec, 4711)] in (["OK"], ["NG"])  # echoed as a number
    assert [v["verdict"] for v in _answers(rec, "4711")] in (["OK"], ["NG"])  # and a string as a string
    (invalid,) = _answers(rec, "x")
    assert (invalid["verdict"], invalid["error"]) == ("ERROR", "invalid") and "unknown field" in invalid["reason"]
    assert [v["verdict"] for v in _answers(rec, "while-away")] in (["OK"], ["NG"])
    for part in dead:  # none answered with the frame of a later part
        (expired,) = _answers(rec, part)
        assert (expired["verdict"], expired["error"]) == ("ERROR", "expired") and "unknown time" in expired["reason"]
        assert expired["run"] != run
    for v in rec.on("verdict"):
        check_message("verdict", v)
    assert rec.on("stats")[-1]["triggers"]["expired"] == 60


class Requester:
    """An MQTT 5 client that sends with a Response Topic and Correlation Data and keeps what comes back there."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.answers: list[tuple[str, dict, bytes | None]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plc-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda c, u, m: self.answers.append(
            (m.topic, json.loads(m.payload), getattr(m.properties, "CorrelationData", None))
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(5)

    def send(self, topic: str, payload: bytes, response_topic: str, correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = response_topic, correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt5_answers_also_go_to_the_response_topic_with_the_correlation_data(tiny_models, mosquitto, tmp_path):
    station = "mqtt5-answers"
    (tmp_path / "command.key").write_text(KEY + "\n")
    config = station_config(
        tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port, station=station,
        camera={"fps": 20, "loop": True}, mqtt={"protocol": 5, "username": "station"},
        service={"mode": "triggered"}, recalibration={"mqtt_command": True},
        commands={"secret_file": str(tmp_path / "command.key")},
    )  # fmt: skip
    prefix = f"edge_ad/{station}"
    with Recorder(mosquitto, topic=f"{prefix}/#") as rec:
        proc = start_daemon(config)
        plc = Requester(mosquitto, "plc/answers/#")
        try:
            assert rec.wait_for(lambda r: any(s["state"] == "online" for s in r.on("status")), timeout=60)
            plc.send(f"{prefix}/trigger", b'{"id": "R-1"}', "plc/answers/t", b"\x00\x01corr-1")
            plc.send(f"{prefix}/trigger", b'{"id": 7, "x": 1}', "plc/answers/t", b"corr-2")
            plc.send(f"{prefix}/trigger", b'{"id": "R-3"}', f"{prefix}/status", b"corr-3")  # not on its own topics
            command = sign_command({"id": "c-1", "frames": 1}, KEY.encode())  # signed, invalid: always answered
            plc.send(f"{prefix}/cmd/recalibrate", command, "plc/answers/c", b"corr-4")
            assert rec.wait_for(lambda r: _answers(r, "R-1") and _answers(r, 7) and _answers(r, "R-3"), timeout=20)
            assert rec.wait_for(lambda r: r.on("result"), timeout=10)
            deadline = time.monotonic() + 10
            while len(plc.answers) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            plc.close()
            _stop(proc)
    answers = {correlation: (topic, payload) for topic, payload, correlation in plc.answers}
    assert set(answers) == {b"\x00\x01corr-1", b"corr-2", b"corr-4"}, plc.answers
    topic, verdict = answers[b"\x00\x01corr-1"]
    assert topic == "plc/answers/t" and verdict == _answers(rec, "R-1")[0]  # the same message as on the verdict topic
    topic, error = answers[b"corr-2"]
    assert error == _answers(rec, 7)[0] and (error["verdict"], error["error"]) == ("ERROR", "invalid")
    topic, reply = answers[b"corr-4"]
    assert topic == "plc/answers/c" and reply == rec.on("result")[0] and reply["id"] == "c-1"
    assert reply["state"] == "rejected" and "frames" in reply["reason"]
    check_message("recalibrate-result", reply)
    assert not any("verdict" in s for s in rec.on("status")), "a trigger made the station publish on its status"
    for v in rec.on("verdict"):
        check_message("verdict", v)


def _protocols(rec: Recorder) -> set:
    return {s.get("mqtt_protocol") for s in rec.on("stats")}


def test_auto_speaks_mqtt5_where_the_broker_does_and_311_where_it_does_not(tiny_models, mosquitto, tmp_path):
    """mqtt.protocol auto (the default): MQTT 5 with mosquitto (a response topic is answered); a broker that
    refuses MQTT 5 at CONNACK gets one refused attempt, then 3.1.1 with the same persistent session."""
    sections = {"camera": {"fps": 20, "loop": True}, "service": {"stats_interval_s": 0.5}}
    station = "auto-five"
    (tmp_path / "five").mkdir()
    (tmp_path / "three").mkdir()
    config = station_config(tmp_path / "five", str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port,
                            station=station, **sections)  # fmt: skip
    with Recorder(mosquitto, topic=f"edge_ad/{station}/#") as rec, Recorder(mosquitto, topic="answers/auto") as ans:
        proc = start_daemon(config)
        assert rec.wait_for(lambda r: "5" in _protocols(r), timeout=60), proc.stderr
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = "answers/auto", b"\x01\x02"
        sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"auto-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        sender.connect(mosquitto.host, mosquitto.port)
        sender.loop_start()
        sender.publish(f"edge_ad/{station}/trigger", b'{"id": "A-1"}', qos=1, properties=props).wait_for_publish(5)
        assert ans.wait_for(lambda r: r.messages, timeout=10), "MQTT 5 in use: the answer goes to the response topic"
        sender.disconnect()
        sender.loop_stop()
        stderr = _stop(proc)
    assert _protocols(rec) == {"5"} and "does not speak MQTT 5" not in stderr
    assert ans.messages[0][1]["trigger"]["id"] == "A-1"

    station = "auto-three"
    with cuttable_proxy(mosquitto.port, mqtt311_only=True) as broker311:
        config = station_config(tmp_path / "three", str(_frames(tmp_path)), tiny_models / "tiny", broker311.port,
                                station=station, **sections)  # fmt: skip
        with Recorder(mosquitto, topic=f"edge_ad/{station}/#") as rec:
            proc = start_daemon(config)
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 5 and "3.1.1" in _protocols(r), timeout=60), (
                proc.stderr
            )
            stderr = _stop(proc)
    assert _protocols(rec) == {"3.1.1"}
    assert broker311.refused_mqtt5 == 1 and stderr.count("does not speak MQTT 5") == 1, stderr
    levels = [mqtt_level(c) for c in broker311.connects]
    assert levels[0] == 5 and set(levels[1:]) == {4}, levels
    assert not any(clean_session(c) for c in broker311.connects), "the fallback keeps the persistent session"
    assert {v["verdict"] for v in rec.on("verdict")} == {"OK", "NG"}
