"""``edge-ad fleet status`` against a real mosquitto: retained messages shaped like the daemon's, and a real daemon."""

from __future__ import annotations

import json
import time
import uuid

import paho.mqtt.publish as mqtt_publish
import pytest

from edge_ad.publish.payloads import stats_payload, status_payload, to_json, will_payload
from tests.support.messages import check_message
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image

pytestmark = pytest.mark.integration

MODEL = {"name": "brick", "version": "2", "variant": "int8", "precision": "f32"}


def stats_of(station: str, run: str, ts: float, **changes) -> dict:
    """Stats as the daemon builds them (edge_ad.publish.payloads), checked against the shipped schema and model."""
    fields = {
        "frames": 12034, "ng": 37, "fps": 9.98, "latency_ms": {"p50": 6.1, "p99": 9.8}, "ng_rate": 0.003,
        "uptime_s": 1206.3, "dropped_frames": 0, "camera": "online", "device": "CPU", "model": MODEL, "spooled": 0,
        "mqtt_protocol": "5",
    } | changes  # fmt: skip
    payload = stats_payload(station, fields, ts=ts, run=run)
    check_message("stats", payload)
    return payload


def status_of(station: str, run: str, state: str = "online", **details) -> dict:
    payload = status_payload(station, state, run=run, model=MODEL, device="CPU", threshold=26.47, **details)
    check_message("status", payload)
    return payload


@pytest.fixture
def fleet(mosquitto):
    """Three stations retained under a prefix of this test's own (the session broker is shared)."""
    prefix = f"fleet{uuid.uuid4().hex[:8]}"
    now = time.time()
    will = will_payload("line2-dead", "r2")
    check_message("status", will)
    hostile = status_of("line5-\u202eevil", "r5", "camera_offline", reason="\x1b[2J\x1b]0;pwned\x07no frames")
    messages = {
        "line1-drift/status": status_of(
            "line1-drift", "r1", drift={"alarm": True, "median_ok_score": 24.1, "limit": 23.8}
        ),
        "line1-drift/stats": stats_of("line1-drift", "r1", now - 1),
        "line2-dead/status": will,  # killed: the broker published its Will
        "line2-dead/stats": stats_of("line2-dead", "r2", now - 5),  # MQTT 3.1.1: the dead run's figures stay
        "line3-old/status": status_of("line3-old", "r3"),
        "line3-old/stats": stats_of("line3-old", "r3", now - 600),  # online, but no stats for 10 minutes
        "line0-good/status": status_of("line0-good", "r0"),
        "line0-good/stats": stats_of("line0-good", "r0", now),
        "line5-\u202eevil/status": hostile,
    }
    batch = [(f"{prefix}/{topic}", to_json(payload), 1, True) for topic, payload in messages.items()]
    batch.append((f"{prefix}/line4-junk/status", b"\x1b[31m not json", 1, True))
    batch.append((f"{prefix}/line6-array/stats", b"[1, 2, 3]", 1, True))
    mqtt_publish.multiple(batch, hostname=mosquitto.host, port=mosquitto.port)
    return f"{mosquitto.host}:{mosquitto.port}", prefix


def fleet_status(broker: str, prefix: str, *extra: str):
    return edge_ad("fleet", "status", "--broker", broker, "--prefix", prefix, "--wait", "1", *extra, timeout=60)


def test_json_marks_the_silent_and_the_alarmed_and_exits_1(fleet):
    broker, prefix = fleet
    result = fleet_status(broker, prefix, "--json")
    assert result.returncode == 1, result.stderr
    view = json.loads(result.stdout)
    rows = {row["station"]: row for row in view["stations"]}
    assert list(rows) == sorted(rows)
    assert set(rows) == {
        "line0-good",
        "line1-drift",
        "line2-dead",
        "line3-old",
        "line4-junk",
        "line5-?evil",
        "line6-array",
    }
    assert view["healthy"] is False and view["junk"]["count"] == 2

    good = rows["line0-good"]
    assert good["healthy"] and not good["silent"] and good["stats_current"]
    assert (good["model"], good["version"], good["variant"]) == ("brick", "2", "int8")
    assert (good["fps"], good["p99_ms"], good["ng_rate"]) == (9.98, 9.8, 0.003)

    drift = rows["line1-drift"]
    assert not drift["silent"] and not drift["healthy"] and drift["alarms"] == ["drift"]
    assert drift["drift"] == {"alarm": True, "median_ok_score": 24.1, "limit": 23.8}

    dead = rows["line2-dead"]
    assert dead["silent"] and dead["state"] == "offline" and dead["silent_why"] == "offline: connection lost"
    assert not dead["stats_current"]

    old = rows["line3-old"]
    assert old["state"] == "online" and old["silent"] and old["silent_why"] == "no stats for 10m"

    assert rows["line4-junk"]["silent"] and rows["line4-junk"]["junk"] == 1
    evil = rows["line5-?evil"]
    assert evil["state"] == "camera_offline" and not evil["healthy"]
    assert "\x1b" not in evil["reason"] and "\x07" not in evil["reason"]


def test_the_table_marks_silent_stations_and_never_prints_escapes(fleet):
    broker, prefix = fleet
    result = fleet_status(broker, prefix)
    assert result.returncode == 1, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line}
    assert "SILENT" in lines["line2-dead"] and "connection lost" in lines["line2-dead"]
    assert "SILENT 10m" in lines["line3-old"]
    assert "ALARM 24.1/23.8" in lines["line1-drift"] and "SILENT" not in lines["line1-drift"]
    assert lines["line0-good"].split()[1] == "OK"
    assert "ignored 2 malformed message(s)" in result.stdout
    for control in ("\x1b", "\x07", "\u202e"):
        assert control not in result.stdout + result.stderr


def test_exit_code_follows_the_selected_stations(fleet):
    broker, prefix = fleet
    assert fleet_status(broker, prefix, "--stations", "line0-*").returncode == 0
    assert fleet_status(broker, prefix, "--stations", "line0-*", "--stations", "line1-*").returncode == 1
    nothing = fleet_status(broker, prefix, "--stations", "nope-*")
    assert nothing.returncode == 1 and "(no stations)" in nothing.stdout


def test_broker_and_usage_errors_are_one_line_and_exit_2(tmp_path):
    from edge_ad.bench.mosquitto import free_port

    down = edge_ad("fleet", "status", "--broker", f"127.0.0.1:{free_port()}", "--wait", "0")
    assert down.returncode == 2 and down.stderr.strip().count("\n") == 0, down.stderr
    assert down.stderr.startswith("edge-ad: error: mqtt: broker 127.0.0.1:") and "not reachable" in down.stderr
    bad = edge_ad("fleet", "status", "--broker", "127.0.0.1", "--prefix", "a/#")
    assert bad.returncode == 2 and bad.stderr.startswith("edge-ad: error: prefix:"), bad.stderr
    assert edge_ad("fleet", "status").returncode == 2  # neither --broker nor --config


def test_a_real_daemon_is_online_then_silent_after_a_kill(tmp_path, tiny_models, mosquitto):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"g{i}.png"), good_image(100 + i))
    cv2.imwrite(str(folder / "z_defect.png"), defect_image(7))
    prefix = f"fleet{uuid.uuid4().hex[:8]}"
    config = station_config(
        tmp_path, str(folder), tiny_models / "tiny", mosquitto.port, station="press-9",
        camera={"fps": 40, "loop": True}, service={"stats_interval_s": 0.5}, mqtt={"prefix": prefix},
    )  # fmt: skip
    proc = start_daemon(config)
    try:
        deadline, row = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            result = edge_ad("fleet", "status", "--config", str(config), "--wait", "0.5", "--json")
            found = json.loads(result.stdout)["stations"] if result.stdout else []
            row = found[0] if found else None
            if row and row["state"] == "online" and row["stats_current"]:
                break
            time.sleep(0.3)
        assert row and row["station"] == "press-9" and not row["silent"], (row, proc.poll())
        assert row["model"] == "tiny" and row["fps"] is not None and row["p99_ms"] is not None
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # mosquitto publishes the Will once it notices the dead connection
        result = edge_ad("fleet", "status", "--config", str(config), "--wait", "0.5", "--json")
        row = json.loads(result.stdout)["stations"][0]
        if row["silent"]:
            break
        time.sleep(0.3)
    assert result.returncode == 1 and row["silent_why"] == "offline: connection lost", row


def test_watch_prints_a_block_per_refresh_and_ctrl_c_exits_0(fleet):
    import signal
    import subprocess
    import sys

    broker, prefix = fleet
    args = ["fleet", "status", "--broker", broker, "--prefix", prefix, "--wait", "0.5", "--watch", "0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "edge_ad.cli", *args], stdout=subprocess.PIPE, text=True)
    try:
        blocks = 0
        while blocks < 2:  # not a terminal: no screen clearing, one block after another
            line = proc.stdout.readline()
            assert line, "watch ended early"
            blocks += line.startswith("fleet ")
            assert "\x1b" not in line
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in out
