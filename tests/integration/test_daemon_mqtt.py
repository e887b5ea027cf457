"""The daemon on a replay folder, publishing to a real mosquitto, read back by a paho subscriber."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.commissioning import read_record
from edge_ad.publish import load_schema
from tests.support.broker import Recorder
from tests.support.exports import judge_replay
from tests.support.messages import check_message
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image, write_frames

pytestmark = pytest.mark.integration


@pytest.mark.export
@pytest.mark.parametrize("requests", [1, 3], ids=["sync", "async-queue"])
def test_every_verdict_arrives_in_order_and_is_right(exported, mosquitto, tmp_path, requests):
    station = f"line-{requests}"  # its own retained status
    with Recorder(mosquitto, topic=f"edge_ad/{station}/status") as rec:
        verdicts, labels = judge_replay(
            exported.bundle, mosquitto, tmp_path, station, infer_requests=requests, variant="int8"
        )
        rec.wait_for(lambda r: any(s["state"] == "offline" for s in r.on("status")))
    assert sum(labels.values()) >= 10 and len(labels) - sum(labels.values()) >= 10
    assert [v["seq"] for v in verdicts] == list(range(1, len(labels) + 1)), "missing, duplicated or reordered"
    assert [v["frame"]["origin"] for v in verdicts] == sorted(labels), "frames judged out of order"
    good = [v for v in verdicts if labels[v["frame"]["origin"]] == 0]
    bad = [v for v in verdicts if labels[v["frame"]["origin"]] == 1]
    assert sum(v["verdict"] == "OK" for v in good) / len(good) >= 0.9
    assert sum(v["verdict"] == "NG" for v in bad) / len(bad) >= 0.9
    # int8 is pinned in the config: it runs if commissioning accepted it on this machine, else fp32 with an alarm
    record = read_record(tmp_path / "state", load_bundle(exported.bundle))
    accepted = record.candidates["int8"].accepted
    runs = "int8" if accepted else "fp32"
    model = {"name": "brick", "version": exported.manifest.version, "variant": runs, "precision": "f32"}
    assert all(v["model"] == model for v in verdicts)
    statuses = rec.on("status")
    for s in statuses:
        jsonschema.validate(s, load_schema("status"))
    assert statuses[0]["state"] == "online" and statuses[0]["model"] == model
    assert statuses[0]["commissioning"]["candidates"]["int8"]["accepted"] is accepted
    assert ("variant_note" in statuses[0]) is not accepted
    assert statuses[-1] == statuses[-1] | {"state": "offline", "reason": "source exhausted"}


@pytest.fixture
def looping_station(tmp_path, tiny_models, mosquitto) -> Path:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"g{i}.png"), good_image(100 + i))
    cv2.imwrite(str(folder / "z_defect.png"), defect_image(7))
    return station_config(
        tmp_path, str(folder), tiny_models / "tiny", mosquitto.port,
        camera={"fps": 40, "loop": True}, service={"stats_interval_s": 0.5},
    )  # fmt: skip


def test_sigterm_stops_cleanly_with_retained_offline(looping_station, mosquitto):
    with Recorder(mosquitto) as rec:
        proc = start_daemon(looping_station)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 40, timeout=30), proc.stderr
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        rec.wait_for(lambda r: r.on("status")[-1]["state"] == "offline")
        assert rec.on("status")[-1]["reason"] == "stopped"
        verdicts = rec.on("verdict")
        assert [v["seq"] for v in verdicts] == list(range(1, len(verdicts) + 1))
        assert {v["verdict"] for v in verdicts if v["frame"]["origin"] == "z_defect.png"} == {"NG"}
        evidence = [v["evidence"] for v in verdicts if v["verdict"] == "NG"]
        assert evidence and all(
            Path(p).is_file() and Path(p.replace(".jpg", "_heatmap.jpg")).is_file() for p in evidence
        )
        assert not any("evidence" in v for v in verdicts if v["verdict"] == "OK")
        assert {v["verdict"] for v in verdicts if v["frame"]["origin"].startswith("g")} == {"OK"}
        rec.wait_for(lambda r: r.on("stats") and r.on("stats")[-1]["frames"] == len(verdicts))
        stats = rec.on("stats")
        assert len(stats) >= 2, "periodic stats plus the final one"
        for message in stats:
            jsonschema.validate(message, load_schema("stats"))
        final = stats[-1]
        assert final["frames"] == len(verdicts) and final["ng"] == sum(v["verdict"] == "NG" for v in verdicts)
        assert final["camera"] == "online" and final["device"] == "CPU" and final["model"]["name"] == "tiny"
        assert final["fps"] > 0 and 0 < final["latency_ms"]["p50"] <= final["latency_ms"]["p99"]
    # a late subscriber sees the retained final status
    with Recorder(mosquitto) as late:
        assert late.wait_for(lambda r: r.messages)
        topic, payload, retained = late.messages[0]
        assert topic.endswith("/status") and retained and payload["state"] == "offline"


def test_crash_leaves_last_will(looping_station, mosquitto):
    with Recorder(mosquitto) as rec:
        proc = start_daemon(looping_station)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 3, timeout=30), proc.stderr
        proc.kill()
        proc.wait(10)
        # mosquitto publishes the will once it notices the dead connection
        assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "offline", timeout=10)
        assert rec.on("status")[-1]["reason"] == "connection lost"


def test_broker_down_at_start_is_not_fatal(tiny_models, tmp_path):
    import cv2

    from tests.support.net import free_port

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), good_image(1))
    config = station_config(tmp_path, str(folder), tiny_models / "tiny", free_port(), mqtt={"connect_timeout_s": 1})
    started = time.monotonic()
    proc = edge_ad("run", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "not reachable after 1 s; running anyway" in proc.stderr
    assert "verdict(s) not acknowledged by the broker at shutdown" in proc.stderr
    assert time.monotonic() - started < 60


def test_the_variant_is_commissioned_once_and_every_restart_runs_the_same(tiny_models, mosquitto, tmp_path):
    folder = write_frames(tmp_path / "frames", [good_image(400), defect_image(400), good_image(401)])
    config = station_config(tmp_path, str(folder), tiny_models / "tiny", mosquitto.port, station="restarts")
    seen = []
    for run in range(3):
        with Recorder(mosquitto, topic="edge_ad/restarts/#") as rec:
            proc = edge_ad("run", "--config", str(config))
            assert proc.returncode == 0, proc.stderr
            rec.wait_for(lambda r: any(s["state"] == "offline" for s in r.on("status")))
        assert ("commissioning tiny v1 on CPU" in proc.stderr) == (run == 0), proc.stderr  # measured once
        (records,) = list((tmp_path / "state" / "commissioning").glob("*.json"))
        online = next(s for s in rec.on("status") if s["state"] == "online")
        jsonschema.validate(online, load_schema("status"))
        chosen = online["commissioning"]["chosen"]
        assert {v["model"]["variant"] for v in rec.on("verdict")} == {online["model"]["variant"]} == {chosen}
        seen.append((chosen, online["model"]["precision"], records.stat().st_mtime_ns))
    assert seen[0] == seen[1] == seen[2], seen  # same variant, same precision, the record untouched


def test_a_dead_delivery_thread_stops_the_station_and_nothing_is_lost(tiny_models, mosquitto, tmp_path):
    """Liveness means delivery: scoring on while nothing reaches the broker would be a silent station."""
    import threading

    from edge_ad.config import load_config
    from edge_ad.errors import BrokerError
    from edge_ad.service import Daemon

    folder = write_frames(tmp_path / "frames", [good_image(600 + i) for i in range(3)])
    sections = {"station": "liveness", "service": {"stats_interval_s": 0.3}, "mqtt": {"keepalive_s": 5}}
    config = station_config(tmp_path, str(folder), tiny_models / "tiny", mosquitto.port,
                            camera={"fps": 30, "loop": True}, **sections)  # fmt: skip
    daemon = Daemon(load_config(config))
    failures: list[Exception] = []

    def serve() -> None:
        try:
            daemon.run()
        except BrokerError as exc:
            failures.append(exc)

    with Recorder(mosquitto, topic="edge_ad/liveness/#") as rec:
        runner = threading.Thread(target=serve)
        runner.start()
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 5, timeout=30)
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        daemon.publisher.client._thread = dead  # paho's network thread, as the daemon sees it after a fatal error
        runner.join(60)
        assert not runner.is_alive() and failures, "the station kept scoring with no delivery thread"
        assert "a delivery thread died; stopping so systemd restarts the station" in str(failures[0])
        last = daemon.seq
        restart = {**sections, "service": {"stats_interval_s": 0.3, "max_frames": 3}}
        again = station_config(tmp_path, str(folder), tiny_models / "tiny", mosquitto.port,
                               camera={"fps": 30, "loop": True}, **restart)  # fmt: skip
        proc = edge_ad("run", "--config", str(again))  # what systemd does next
        assert proc.returncode == 0, proc.stderr
        assert rec.wait_for(lambda r: {v["seq"] for v in r.on("verdict")} >= set(range(1, last + 4)), timeout=20)
    assert {v["seq"] for v in rec.on("verdict")} == set(
        range(1, last + 4)
    )  # every verdict delivered, none twice-numbered


def test_bad_files_in_a_replay_folder_are_skipped_counted_and_never_stall_it(tiny_models, mosquitto, tmp_path):
    folder = write_frames(tmp_path / "frames", [good_image(500 + i) for i in range(5)])
    (folder / "0001.png").write_bytes(b"")  # zero bytes
    (folder / "0003.png").write_text("not an image at all")  # text named .png
    config = station_config(tmp_path, str(folder), tiny_models / "tiny", mosquitto.port, station="bad-files")
    with Recorder(mosquitto, topic="edge_ad/bad-files/#") as rec:
        proc = edge_ad("run", "--config", str(config), timeout=60)
        assert proc.returncode == 0, proc.stderr
        rec.wait_for(lambda r: any(s["state"] == "offline" for s in r.on("status")))
    assert [v["frame"]["origin"] for v in rec.on("verdict")] == ["0000.png", "0002.png", "0004.png"]  # once each
    assert rec.on("stats")[-1]["bad_frames"] == 2
    assert [s["state"] for s in rec.on("status")] == ["online", "offline"]  # never camera_offline
    assert proc.stderr.count("is not a readable image; skipped") == 2 and "Traceback" not in proc.stderr


def test_verdicts_spooled_while_broker_down_arrive_after_restart(tiny_models, tmp_path):
    """Broker down for a whole run: verdicts wait on disk; the next run delivers them, in order, first."""
    from tests.support.broker import start_mosquitto
    from tests.support.net import free_port

    folder = write_frames(tmp_path / "frames", [good_image(200 + i) for i in range(6)])
    port = free_port()
    config = station_config(tmp_path, str(folder), tiny_models / "tiny", port, mqtt={"connect_timeout_s": 1})
    down = edge_ad("run", "--config", str(config))
    assert down.returncode == 0, down.stderr
    assert "6 verdict(s) not acknowledged by the broker at shutdown; kept in the spool" in down.stderr

    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with start_mosquitto(broker_dir, port=port) as broker, Recorder(broker) as rec:
        up = edge_ad("run", "--config", str(config))
        assert up.returncode == 0, up.stderr
        rec.wait_for(lambda r: len({v["seq"] for v in r.on("verdict")}) >= 12)
    seqs = [v["seq"] for v in rec.on("verdict")]
    first_seen = list(dict.fromkeys(seqs))  # de-duplicated by seq, in arrival order
    assert first_seen == list(range(1, 13)), seqs  # 1-6 from the spool, then 7-12: no reuse, no gap
    first = {v["seq"]: v for v in reversed(rec.on("verdict"))}  # the first copy of each
    assert [first[s].get("replayed") for s in range(1, 13)] == [True] * 6 + [None] * 6  # late ones say so
    runs = [first[s]["run"] for s in range(1, 13)]
    assert len(set(runs[:6])) == len(set(runs[6:])) == 1 and runs[0] != runs[6]  # judged by the run that was down


def _folder_camera(tmp_path: Path) -> tuple[Path, Callable[[], Callable[[], None]]]:
    """A replay folder, and how to unplug it (rename) returning how to plug it back."""
    folder = write_frames(tmp_path / "frames", [good_image(300 + i) for i in range(3)])

    def unplug() -> Callable[[], None]:
        hidden = tmp_path / "unplugged"
        folder.rename(hidden)
        return lambda: hidden.rename(folder)

    return folder, unplug


def _video_camera(tmp_path: Path) -> tuple[Path, Callable[[], Callable[[], None]]]:
    """A looping video file, and how to delete it returning how to put it back."""
    import cv2

    clip = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(5):
        writer.write(good_image(500 + i, size=64))
    writer.release()

    def delete() -> Callable[[], None]:
        kept = clip.read_bytes()
        clip.unlink()
        return lambda: clip.write_bytes(kept)

    return clip, delete


@pytest.mark.parametrize(
    ("camera", "reason"),
    [(_folder_camera, "camera.source"), (_video_camera, "removed or replaced")],
    ids=["folder-vanishes", "video-file-deleted"],
)
def test_camera_that_goes_away_goes_offline_and_recovers(tiny_models, mosquitto, tmp_path, camera, reason):
    source, take_away = camera(tmp_path)
    config = station_config(
        tmp_path, str(source), tiny_models / "tiny", mosquitto.port,
        camera={"fps": 20, "loop": True, "stall_timeout_s": 2, "reconnect_max_s": 2},
    )  # fmt: skip
    with Recorder(mosquitto) as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 3, timeout=30), proc.stderr
            give_back = take_away()
            gone = time.monotonic()
            assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "camera_offline", timeout=5)
            assert time.monotonic() - gone <= 5 and reason in rec.on("status")[-1]["reason"]
            count = len(rec.on("verdict"))
            give_back()
            assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "online", timeout=15)
            assert rec.wait_for(lambda r: len(r.on("verdict")) > count + 3, timeout=15)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    seqs = [v["seq"] for v in rec.on("verdict")]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence must stay gap-free and ordered across the outage"


def test_plc_trigger_handshake(tiny_models, mosquitto, tmp_path):
    """Triggered mode: each trigger id gets exactly one verdict carrying that id (with its JSON type); junk is
    counted, answered ERROR when it names an id, and no payload can stop the network thread; a retained trigger
    is never answered."""
    import json

    import cv2
    import paho.mqtt.publish as mqtt_publish

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), good_image(400))
    cv2.imwrite(str(folder / "b.png"), defect_image(400))
    config = station_config(
        tmp_path, str(folder), tiny_models / "tiny", mosquitto.port, station="plc-handshake",
        camera={"fps": 50, "loop": True}, service={"mode": "triggered", "stats_interval_s": 0.3},
    )  # fmt: skip
    topic = "edge_ad/plc-handshake/trigger"  # a station of its own: no earlier test's session keeps triggers for it
    send = {"qos": 1, "hostname": mosquitto.host, "port": mosquitto.port}
    mqtt_publish.single(topic, b'{"id": "OLD"}', retain=True, **send)  # from yesterday: must never be answered
    with Recorder(mosquitto) as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: any(s["state"] == "online" for s in r.on("status")), timeout=30)
            time.sleep(1.0)
            assert rec.on("verdict") == [], "triggered mode must not score untriggered (or retained) triggers"
            junk = [
                b"garbage",
                b"garbage!",  # the same cause again: counted, not logged again
                b'{"id": "x", "evil": 1}',
                b"{" * 5000,
                b"[" * 1024,  # used to raise RecursionError in paho's network thread and end all delivery
                b"\xff\xfe{}",
                b'{"id": NaN}',
            ]
            for payload in [b'{"id": "P-1"}', *junk, b'{"id": "P-2"}', b'{"id": 3}']:
                mqtt_publish.single(topic, payload, **send)
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 3, timeout=10)
            assert rec.wait_for(lambda r: r.on("stats") and r.on("stats")[-1].get("triggers", {}).get("rejected") == 7)
            time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
            mqtt_publish.single(topic, b"", retain=True, **send)  # clear the retained trigger
    assert proc.returncode == 0, stderr
    for v in rec.on("verdict"):
        check_message("verdict", v)
    verdicts = [v for v in rec.on("verdict") if v["verdict"] != "ERROR"]
    assert [v["trigger"]["id"] for v in verdicts] == ["P-1", "P-2", 3]
    errors = [(v["trigger"]["id"], v["error"]) for v in rec.on("verdict") if v["verdict"] == "ERROR"]
    assert errors == [("x", "invalid")]  # the only junk that names an id
    final = rec.on("stats")[-1]
    assert final["triggers"] == {"accepted": 3, "rejected": 7, "dropped": 0, "expired": 0}
    assert final["retained_ignored"] == 1
    assert "faults" not in final and "Traceback" not in stderr
    assert stderr.count("trigger rejected") == 6  # one line per cause per minute
    assert json.loads(json.dumps(verdicts))[0]["seq"] >= 1


def test_failed_self_test_publishes_error_and_exits(tiny_models, mosquitto, tmp_path):
    import json

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models, symlinks=True)
    manifest = models / "tiny" / "1" / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["golden"][1]["scores"]["fp32"] *= 0.5  # as if the device computed differently from the export machine
    manifest.write_text(json.dumps(raw))
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    cv2.imwrite(str(frames / "a.png"), good_image(1))
    config = station_config(tmp_path, str(frames), models / "tiny", mosquitto.port, model={"variant": "fp32"})
    with Recorder(mosquitto) as rec:
        proc = edge_ad("run", "--config", str(config))
        rec.wait_for(lambda r: any(not retained for t, _, retained in r.messages if t.endswith("/status")))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "edge-ad: error: self-test failed on CPU (fp32, f32): golden/1.png" in proc.stderr
    statuses = [p for t, p, retained in rec.messages if t.endswith("/status") and not retained]  # live ones
    assert statuses and {s["state"] for s in statuses} == {"error"}, "never online with a failing self-test"
    assert statuses[0]["reason"].startswith("self-test failed")
    assert rec.on("verdict") == []


def test_new_active_bundle_is_swapped_in_without_restart(tiny_models, mosquitto, tmp_path):

    from edge_ad.bundle import activate
    from tests.support.tiny_bundle import make_tiny_bundle

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models, symlinks=True)
    config = station_config(tmp_path, str(_looping_frames(tmp_path)), models / "tiny", mosquitto.port,
                            camera={"fps": 40, "loop": True})  # fmt: skip

    def versions(r):
        return [v["model"]["version"] for v in r.on("verdict")]

    with Recorder(mosquitto) as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: "1" in versions(r), timeout=30), proc.stderr
            make_tiny_bundle(models, "tiny", threshold=123.0)  # version 2, activated atomically
            assert rec.wait_for(lambda r: "2" in versions(r), timeout=15)
            assert rec.wait_for(lambda r: r.on("status")[-1].get("threshold") == 123.0)
            broken = make_tiny_bundle(models, "tiny")  # version 3 ...
            (broken / "model.bin").write_bytes(b"truncated")  # ... damaged in transit
            assert rec.wait_for(lambda r: "reload failed" in r.on("status")[-1]["reason"], timeout=15)
            count = len(rec.on("verdict"))
            assert rec.wait_for(lambda r: len(r.on("verdict")) > count + 5)
            assert set(versions(rec)[count:]) == {"2"}, "the running model stays after a failed reload"
            activate(models / "tiny", "1")
            proc.send_signal(signal.SIGHUP)
            assert rec.wait_for(lambda r: versions(r)[-1] == "1", timeout=15)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    seqs = [v["seq"] for v in rec.on("verdict")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no verdict lost or repeated across swaps"
    assert "model.bin: size" in stderr and "Traceback" not in stderr


def _looping_frames(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames", [good_image(600 + i) for i in range(3)])


def test_tls_client_certificate_and_password(tiny_models, tmp_path):

    from tests.support.broker import start_mosquitto
    from tests.support.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    passwd = tmp_path / "pki" / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "station", "s3cret"], check=True)
    passwd.chmod(0o644)
    extra = (
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"require_certificate true\nallow_anonymous false\npassword_file {passwd}\n"
    )
    frames = _looping_frames(tmp_path)
    (tmp_path / "secret.txt").write_text("s3cret\n")

    def config(password_file: str) -> Path:
        return station_config(
            tmp_path, str(frames), tiny_models / "tiny", broker.port, camera={"fps": 20},
            mqtt={"connect_timeout_s": 5, "username": "station", "password_file": password_file,
                  "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}},
        )  # fmt: skip

    def recorder_setup(client):
        client.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key))
        client.username_pw_set("station", "s3cret")

    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with start_mosquitto(broker_dir, extra=extra) as broker, Recorder(broker, setup=recorder_setup) as rec:
        ok = edge_ad("run", "--config", str(config("secret.txt")))
        assert ok.returncode == 0, ok.stderr
        assert rec.wait_for(lambda r: len(r.on("verdict")) == 3)
        assert "s3cret" not in ok.stderr, "the password must never be logged"
        (tmp_path / "secret.txt").write_text("wrong\n")
        refused = edge_ad("run", "--config", str(config("secret.txt")))
        assert "refused the connection" in refused.stderr and "kept in the spool" in refused.stderr
        missing = edge_ad("run", "--config", str(config("nope.txt")))
        assert missing.returncode == 2 and "mqtt.password_file: cannot read" in missing.stderr
    assert len(rec.on("verdict")) == 3


def test_drift_alarm_on_status(mosquitto, tmp_path):
    from tests.support.tiny_bundle import make_tiny_bundle

    make_tiny_bundle(tmp_path / "models", "tiny", threshold=1.0)  # good parts score ~0.4-0.5
    config = station_config(
        tmp_path, str(_looping_frames(tmp_path)), tmp_path / "models" / "tiny", mosquitto.port,
        camera={"fps": 50, "loop": True}, service={"drift": {"window": 5, "fraction": 0.2}},
    )  # fmt: skip
    with Recorder(mosquitto) as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: any("drift" in s for s in r.on("status")), timeout=30), proc.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    status = next(s for s in rec.on("status") if "drift" in s)
    jsonschema.validate(status, load_schema("status"))
    assert status["state"] == "online" and status["reason"].startswith("drift")
    assert status["drift"]["limit"] == 0.2 and status["drift"]["median_ok_score"] > 0.2
    assert all(v["verdict"] == "OK" for v in rec.on("verdict")), "a drift alarm is not a verdict"
    assert "drift: median OK score" in stderr


def test_broker_outage_mid_stream_loses_nothing(tiny_models, tmp_path):
    """mosquitto stops mid-stream and comes back: every verdict arrives, in sequence order."""
    from tests.support.broker import start_mosquitto
    from tests.support.net import free_port

    port, broker_dir = free_port(), tmp_path / "broker"
    broker_dir.mkdir()
    frames = _looping_frames(tmp_path)
    config = station_config(
        tmp_path, str(frames), tiny_models / "tiny", port, station="outage",
        camera={"fps": 20, "loop": True}, service={"state_dir": str(tmp_path / "state"), "max_frames": 120},
    )  # fmt: skip
    with start_mosquitto(broker_dir, port, persist=True) as broker:
        rec = Recorder(broker, topic="edge_ad/outage/verdict", session="outage-recorder").__enter__()
        proc = start_daemon(config)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 20, timeout=30)
    before = len(rec.on("verdict"))
    time.sleep(2)  # the daemon keeps scoring into its spool
    try:
        with start_mosquitto(broker_dir, port, persist=True):
            _, stderr = proc.communicate(timeout=60)  # max_frames reached, spool flushed, clean exit
            assert proc.returncode == 0, stderr
            rec.wait_for(lambda r: len({v["seq"] for v in r.on("verdict")}) >= 120, timeout=20)
    finally:
        rec.__exit__()
    seqs = [v["seq"] for v in rec.on("verdict")]
    first_seen = list(dict.fromkeys(seqs))  # de-duplicated by sequence number, arrival order kept
    assert first_seen == list(range(1, 121)), f"lost or reordered: {sorted(set(range(1, 121)) - set(seqs))}"
    assert before < 120 and "broker" in stderr


def _spooled(path: Path) -> int:
    """Rows in a spool database another process writes (read-only: 0 while it does not exist yet)."""
    if not path.exists():
        return 0
    with (
        contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db,
        contextlib.suppress(sqlite3.OperationalError),  # the table is not created yet
    ):
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    return 0


def test_sigkill_with_broker_down_keeps_spooled_verdicts_and_their_numbers(tiny_models, tmp_path):
    """kill -9 while the broker is down; the restarted daemon delivers the spool first and continues the sequence."""
    from tests.support.broker import start_mosquitto
    from tests.support.net import free_port

    port = free_port()
    frames = _looping_frames(tmp_path)
    sections = {"camera": {"fps": 20, "loop": True}, "mqtt": {"connect_timeout_s": 1}, "station": "killed"}
    from edge_ad.publish.spool import Spool

    proc = start_daemon(station_config(tmp_path, str(frames), tiny_models / "tiny", port, **sections))
    path = tmp_path / "state" / "spool.sqlite"
    deadline = time.monotonic() + 120  # start-up and self-test take seconds, more on a loaded machine
    while time.monotonic() < deadline and proc.poll() is None and _spooled(path) < 30:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    spool = Spool(tmp_path / "state" / "spool.sqlite")
    killed, last = len(spool), spool.last_seq()
    spool.close()
    assert killed >= 20 and last == killed, (killed, last)

    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    again = station_config(
        tmp_path, str(frames), tiny_models / "tiny", port, **sections, service={"state_dir": str(tmp_path / "state"),
        "max_frames": 10},
    )  # fmt: skip
    with start_mosquitto(broker_dir, port=port) as broker, Recorder(broker, topic="edge_ad/killed/verdict") as rec:
        up = edge_ad("run", "--config", str(again))
        assert up.returncode == 0, up.stderr
        rec.wait_for(lambda r: len(r.on("verdict")) >= 20)
    first_seen = list(dict.fromkeys(v["seq"] for v in rec.on("verdict")))
    # 1..killed from the spool with their original numbers, then killed+1..killed+10: no gap, reuse or reorder
    assert first_seen == list(range(1, killed + 11)), first_seen


def test_network_camera_that_stops_sending_goes_offline_and_recovers(tiny_models, mosquitto, tmp_path):
    """An HTTP camera that keeps the connection but sends nothing: camera_offline within 5 s, back when it resumes."""
    from tests.support.mjpeg import serve_mjpeg

    with serve_mjpeg([good_image(s) for s in range(3)], fps=20) as camera:
        config = station_config(
            tmp_path, camera.url, tiny_models / "tiny", mosquitto.port, station="netcam",
            camera={"open_timeout_s": 2, "stall_timeout_s": 2, "reconnect_max_s": 1},
        )  # fmt: skip
        with Recorder(mosquitto, topic="edge_ad/netcam/#") as rec:
            proc = start_daemon(config)
            try:
                assert rec.wait_for(lambda r: len(r.on("verdict")) >= 5, timeout=30)
                camera.hang()
                hung = time.monotonic()
                assert rec.wait_for(lambda r: any(s["state"] == "camera_offline" for s in r.on("status")), timeout=10)
                assert time.monotonic() - hung <= 5, "camera_offline took longer than 5 s"
                count = len(rec.on("verdict"))
                camera.resume()
                assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "online", timeout=20)
                assert rec.wait_for(lambda r: len(r.on("verdict")) >= count + 5, timeout=20), (
                    "no verdicts after recovery"
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
