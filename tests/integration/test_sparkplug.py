"""Sparkplug B against a real mosquitto, read back with the tests' own wire decoder (tests/support/sparkplug.py)."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytest.importorskip("google.protobuf")

from edge_ad.config import MqttConfig, SparkplugConfig
from edge_ad.publish import load_schema
from edge_ad.publish.sparkplug.metrics import DEVICE_METRICS
from edge_ad.publish.sparkplug.node import EdgeNode
from edge_ad.types import Verdict, published_scores
from tests.support.broker import Broker, Recorder
from tests.support.sparkplug import Message, SparkplugRecorder, encode_rebirth
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image, write_frames

pytestmark = pytest.mark.integration

MODEL = {"name": "brick", "version": "2", "variant": "int8", "precision": "f32"}
ALIASES = {m.alias: m.name for m in DEVICE_METRICS}
_names = itertools.count()


def make_node(broker: Broker, state_dir: Path, node_id: str | None = None) -> tuple[EdgeNode, str]:
    node_id = node_id or f"node-{next(_names)}-{time.monotonic_ns()}"  # the session broker is shared
    config = SparkplugConfig(enabled=True, group_id="Test Line", edge_node_id=node_id)
    node = EdgeNode(config, MqttConfig(host=broker.host, port=broker.port), "station-x", state_dir, retry_s=(0.2, 1.0))
    node.model(MODEL, 26.0)
    node.camera("online")
    return node, node_id


def verdict(seq: int) -> Verdict:
    ng = seq % 7 == 0
    return Verdict(seq=seq, ts=time.time(), verdict="NG" if ng else "OK", score=30.0 + seq if ng else 10.0 + seq / 100,
                   threshold=26.0, model=MODEL, latency_ms=5.0 + seq / 1000, frame_index=seq)  # fmt: skip


def values(message: Message) -> dict[str, object]:
    """A DDATA's metrics by name, resolved through the aliases of the birth."""
    assert all(m.name is None and m.datatype is None for m in message.payload.metrics), "DDATA names a metric"
    return {ALIASES[m.alias]: m.value for m in message.payload.metrics}


def bdseq(message: Message) -> int:
    return message.payload.by_name()["bdSeq"].value


def of_node(rec: SparkplugRecorder, node_id: str) -> list[Message]:
    """What the node sent (not the commands sent to it)."""
    return [m for m in rec.of() if m.topic.split("/")[3] == node_id and not m.kind.endswith("CMD")]


def test_births_come_first_data_uses_their_aliases_and_seq_wraps(mosquitto, tmp_path):
    with SparkplugRecorder(mosquitto) as rec:
        node, node_id = make_node(mosquitto, tmp_path)
        node.start()
        assert rec.wait_for(lambda r: any(m.kind == "DBIRTH" for m in of_node(r, node_id)))
        for seq in range(1, 301):
            node.verdict(verdict(seq))
        assert rec.wait_for(lambda r: sum(m.kind == "DDATA" for m in of_node(r, node_id)) >= 300)
        node.stop()
        assert rec.wait_for(lambda r: of_node(r, node_id)[-1].kind == "NDEATH")
    messages = of_node(rec, node_id)
    assert [m.kind for m in messages] == ["NBIRTH", "DBIRTH"] + ["DDATA"] * 300 + ["NDEATH"]
    assert messages[0].topic == f"spBv1.0/Test Line/NBIRTH/{node_id}"
    assert messages[1].topic == f"spBv1.0/Test Line/DBIRTH/{node_id}/station"
    assert all(m.qos == 0 and not m.retain for m in messages[:-1])  # births and data: QoS 0, never retained
    # seq: 0 in NBIRTH, then +1 on every message, 255 -> 0; NDEATH has none
    assert [m.payload.seq for m in messages[:-1]] == [i % 256 for i in range(302)]
    assert messages[-1].payload.seq is None
    nbirth, dbirth = messages[0].payload.by_name(), messages[1].payload
    assert bdseq(messages[0]) == bdseq(messages[-1]) == 0  # a fresh state directory
    assert nbirth["Node Control/Rebirth"].value is False and nbirth["Node Control/Rebirth"].alias is None
    births = {m.name: m for m in dbirth.metrics}
    assert {(m.name, m.alias, m.datatype) for m in dbirth.metrics} == {
        (s.name, s.alias, s.datatype) for s in DEVICE_METRICS
    }
    assert all(m.timestamp for m in dbirth.metrics)
    assert births["Inspection/NG"].is_null and births["Inspection/Score"].is_null  # no verdict yet
    assert births["Model/Name"].value == "brick" and births["Inspection/Threshold"].value == 26.0
    assert births["Camera/State"].value == "online"
    for seq, message in enumerate(messages[2:-1], start=1):
        expected = verdict(seq)
        got = values(message)  # only the verdict's metrics: the model did not change
        score, norm, _ = published_scores(expected.score, 26.0)
        assert got == {
            "Inspection/NG": expected.verdict == "NG",
            "Inspection/Score": score,
            "Inspection/Score Normalised": norm,
            "Inspection/Seq": seq,
            "Inspection/Latency ms": round(expected.latency_ms, 2),
        }
        assert all(m.timestamp for m in message.payload.metrics)


def test_rebirth_on_ncmd_keeps_the_bdseq_and_junk_is_counted(mosquitto, tmp_path):
    node_id = f"rebirth-{time.monotonic_ns()}"
    ncmd = f"spBv1.0/Test Line/NCMD/{node_id}"
    host = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{node_id}")
    host.connect(mosquitto.host, mosquitto.port)
    host.loop_start()
    try:
        host.publish(ncmd, encode_rebirth(True), qos=1, retain=True).wait_for_publish(5)  # an old, retained one
        with SparkplugRecorder(mosquitto) as rec:
            node, _ = make_node(mosquitto, tmp_path, node_id)
            node.start()
            assert rec.wait_for(lambda r: any(m.kind == "DBIRTH" for m in of_node(r, node_id)))
            for seq in (1, 2, 3):
                node.verdict(verdict(seq))
            assert rec.wait_for(lambda r: sum(m.kind == "DDATA" for m in of_node(r, node_id)) == 3)
            host.publish(ncmd, b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained one
            for junk in (b"\xff" * 40, encode_rebirth(True, name="Node Control/Reboot")):
                host.publish(ncmd, junk)
            host.publish(ncmd, encode_rebirth(True))  # what a host sends (MQTT Engine: a write of true)
            assert rec.wait_for(lambda r: [m.kind for m in of_node(r, node_id)].count("NBIRTH") == 2)
            node.verdict(verdict(4))
            assert rec.wait_for(lambda r: sum(m.kind == "DDATA" for m in of_node(r, node_id)) == 4)
            counters = node.counters()
            node.stop()
    finally:
        host.loop_stop()
        host.disconnect()
    messages = of_node(rec, node_id)
    kinds = [m.kind for m in messages]
    assert kinds[:7] == ["NBIRTH", "DBIRTH", "DDATA", "DDATA", "DDATA", "NBIRTH", "DBIRTH"], kinds
    assert [m.payload.seq for m in messages[:8]] == [0, 1, 2, 3, 4, 0, 1, 2]  # the birth starts seq again
    assert bdseq(messages[5]) == bdseq(messages[0])  # same session, same bdSeq
    assert values(messages[7])["Inspection/Seq"] == 4
    rebirth = {m.name: m.value for m in messages[6].payload.metrics}  # the DBIRTH has the latest values
    assert rebirth["Inspection/Seq"] == 3 and rebirth["Model/Name"] == "brick"
    assert counters == counters | {"online": True, "births": 2, "rejected": 3}  # retained, junk, not a rebirth


def test_a_broker_restart_gives_a_new_bdseq_and_births_before_any_data(tmp_path):
    from tests.support.broker import start_mosquitto
    from tests.support.net import free_port

    port, broker_dir = free_port(), tmp_path / "broker"
    broker_dir.mkdir()
    queue_qos0 = "queue_qos0_messages true\n"  # the recorder's persistent session also gets the births it missed
    stop = threading.Event()
    node, node_id = make_node(Broker("127.0.0.1", port, None), tmp_path)  # type: ignore[arg-type]

    def feed() -> None:
        for seq in itertools.count(1):
            if stop.wait(0.02):
                return
            node.verdict(verdict(seq))

    feeder = threading.Thread(target=feed)
    with start_mosquitto(broker_dir, port, extra=queue_qos0, persist=True) as broker:
        rec = SparkplugRecorder(broker, session=f"spb-rec-{node_id}").__enter__()
        node.start()
        feeder.start()
        assert rec.wait_for(lambda r: sum(m.kind == "DDATA" for m in of_node(r, node_id)) >= 10)
    time.sleep(1.0)  # the node scores on, nothing goes out
    try:
        with start_mosquitto(broker_dir, port, extra=queue_qos0, persist=True):
            assert rec.wait_for(lambda r: [m.kind for m in of_node(r, node_id)].count("NBIRTH") == 2, timeout=20)
            assert rec.wait_for(lambda r: of_node(r, node_id)[-1].kind == "DDATA" and len(of_node(r, node_id)) > 20)
            stop.set()
            feeder.join()
            node.stop()
            assert rec.wait_for(lambda r: of_node(r, node_id)[-1].kind == "NDEATH")
    finally:
        stop.set()
        rec.__exit__()
    received = of_node(rec, node_id)
    assert all(bdseq(m) == bdseq(received[0]) for m in received[:-1] if m.kind == "NDEATH")  # an old Will, if any
    messages = [m for m in received[:-1] if m.kind != "NDEATH"] + received[-1:]
    second = [i for i, m in enumerate(messages) if m.kind == "NBIRTH"][1]
    kinds = [m.kind for m in messages]
    assert kinds[:2] == kinds[second : second + 2] == ["NBIRTH", "DBIRTH"], kinds
    assert set(kinds[2:second]) == set(kinds[second + 2 : -1]) == {"DDATA"}  # no data outside a birth's session
    assert bdseq(messages[second]) == bdseq(messages[0]) + 1 == bdseq(messages[-1])  # a new CONNECT
    assert [m.payload.seq for m in messages[second : second + 3]] == [0, 1, 2]
    seen = [values(m)["Inspection/Seq"] for m in messages if m.kind == "DDATA"]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def _frames(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames", [good_image(700), good_image(701), defect_image(700)])


def test_the_daemon_sends_verdicts_as_ddata_and_its_will_is_ndeath(tiny_models, mosquitto, tmp_path):
    """The real daemon: births, a DDATA per verdict (as the JSON one); kill -9 -> NDEATH; restart -> bdSeq + 1."""
    station = f"spb-{time.monotonic_ns()}"
    sections = {
        "station": station,
        "camera": {"fps": 20, "loop": True},
        "service": {"stats_interval_s": 0.5},
        "sparkplug": {"enabled": True, "group_id": "Line3"},
    }
    config = station_config(tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port, **sections)
    topic = f"spBv1.0/Line3/+/{station}/#"  # '/#' matches the node topics (no device level) too
    with SparkplugRecorder(mosquitto, topic=topic) as rec, Recorder(mosquitto, topic=f"edge_ad/{station}/#") as js:

        def ddata(r: SparkplugRecorder) -> list[dict]:
            return [values(m) for m in r.of("DDATA") if "Inspection/Seq" in values(m)]

        proc = start_daemon(config)
        assert rec.wait_for(lambda r: {v["Inspection/NG"] for v in ddata(r)} == {True, False}, timeout=60), proc.stderr
        assert rec.wait_for(lambda r: any("Stats/FPS" in values(m) for m in r.of("DDATA")), timeout=10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert rec.wait_for(lambda r: r.of("NDEATH"), timeout=10)  # the Will
        first = rec.of()
        # restart: a clean run to the end of the folder (max_frames) ends with an NDEATH of its own
        again = station_config(tmp_path, str(_frames(tmp_path)), tiny_models / "tiny", mosquitto.port,
                               **{**sections, "service": {"max_frames": 6, "stats_interval_s": 0.5}})  # fmt: skip
        done = edge_ad("run", "--config", str(again))
        assert done.returncode == 0, done.stderr
        assert rec.wait_for(lambda r: len(r.of("NDEATH")) == 2)
        assert js.wait_for(lambda r: r.on("stats") and r.on("stats")[-1].get("sparkplug", {}).get("bdseq") == 1)
    kinds = [m.kind for m in first]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"] and kinds[-1] == "NDEATH" and set(kinds[2:-1]) == {"DDATA"}, kinds
    assert bdseq(first[0]) == bdseq(first[-1]) == 0 and first[-1].qos == 1 and not first[-1].retain
    births = first[1].payload.by_name()
    assert births["Model/Name"].value == "tiny" and births["Camera/State"].value == "online"
    # every DDATA verdict is the JSON verdict with the same seq
    json_verdicts = {v["seq"]: v for v in js.on("verdict")}
    spb_verdicts = [values(m) for m in first if m.kind == "DDATA" and "Inspection/Seq" in values(m)]
    assert len(spb_verdicts) >= 3
    for v in spb_verdicts:
        j = json_verdicts[v["Inspection/Seq"]]
        assert v["Inspection/NG"] == (j["verdict"] == "NG")
        # the same numbers as the JSON topics (one rounding rule), not merely close
        assert (v["Inspection/Score"], v["Inspection/Score Normalised"]) == (j["score"], j["score_norm"])
    second = rec.of()[len(first) :]
    assert [m.kind for m in second][:2] == ["NBIRTH", "DBIRTH"] and second[-1].kind == "NDEATH"
    assert bdseq(second[0]) == bdseq(second[-1]) == 1  # kept in the state directory across the restart
    assert (tmp_path / "state" / "sparkplug.bdseq").read_text().strip() == "1"
    stats = js.on("stats")[-1]
    jsonschema.validate(stats, load_schema("stats"))
    assert stats["sparkplug"] == stats["sparkplug"] | {"bdseq": 1, "births": 1, "rejected": 0, "dropped": 0}


def test_a_sparkplug_fault_never_stops_the_json_verdicts(tiny_models, mosquitto, tmp_path, monkeypatch):
    from edge_ad.config import load_config
    from edge_ad.publish.sparkplug import payloads
    from edge_ad.service import Daemon

    def broken(*args, **kwargs):
        raise RuntimeError("injected: DDATA cannot be encoded")

    monkeypatch.setattr(payloads, "ddata", broken)
    station = f"spb-fault-{time.monotonic_ns()}"
    sections = {
        "station": station,
        "camera": {"fps": 10},
        "service": {"max_frames": 12},
        "sparkplug": {"enabled": True},
    }
    frames = write_frames(tmp_path / "frames", [good_image(800 + i) for i in range(12)])
    config = station_config(tmp_path, str(frames), tiny_models / "tiny", mosquitto.port, **sections)
    with Recorder(mosquitto, topic=f"edge_ad/{station}/#") as js, SparkplugRecorder(mosquitto) as rec:
        daemon = Daemon(load_config(config))
        assert daemon.run() == 0
        assert js.wait_for(lambda r: len(r.on("verdict")) == 12)
        assert js.wait_for(lambda r: r.on("status") and r.on("status")[-1]["state"] == "offline")
    assert [v["seq"] for v in js.on("verdict")] == list(range(1, 13))  # every verdict, in order
    assert daemon.guard.errors.get("sparkplug", 0) >= 1  # counted, the thread went on
    assert any("faults" in s for s in js.on("status"))  # and the status says so
    mine = [m.kind for m in rec.of() if m.topic.split("/")[3] == station]
    assert mine[:2] == ["NBIRTH", "DBIRTH"] and mine[-1] == "NDEATH" and "DDATA" not in mine


def test_a_failing_counters_call_never_stops_the_verdict_loop(tiny_models, mosquitto, tmp_path, monkeypatch):
    """Found by the reviewer: the stats called sparkplug/opcua counters() outside the guard, on the verdict loop."""
    from edge_ad.config import load_config
    from edge_ad.publish.sparkplug.node import EdgeNode
    from edge_ad.service import Daemon

    def broken(self):
        raise RuntimeError("injected: counters")

    monkeypatch.setattr(EdgeNode, "counters", broken)
    station = f"spb-counters-{time.monotonic_ns()}"
    sections = {
        "station": station,
        "camera": {"fps": 10},
        "service": {"max_frames": 12, "stats_interval_s": 0.2},
        "sparkplug": {"enabled": True},
    }
    frames = write_frames(tmp_path / "frames", [good_image(820 + i) for i in range(12)])
    config = station_config(tmp_path, str(frames), tiny_models / "tiny", mosquitto.port, **sections)
    with Recorder(mosquitto, topic=f"edge_ad/{station}/#") as js:
        daemon = Daemon(load_config(config))
        assert daemon.run() == 0
        assert js.wait_for(lambda r: len(r.on("verdict")) == 12 and r.on("stats") and r.on("stats")[-1].get("stale"))
    assert daemon.guard.errors.get("sparkplug counters", 0) >= 2  # counted at every stats, the loop went on
    assert all("sparkplug" not in s for s in js.on("stats"))
