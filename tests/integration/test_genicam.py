"""GenICam cameras end to end: the daemon on a real simulated GigE Vision camera (Aravis' fake camera on
loopback), a real mosquitto and a paho subscriber."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.publish as mqtt_publish
import pytest

from edge_ad.capture.genicam.aravis import aravis
from edge_ad.capture.sources import open_source
from edge_ad.config import CameraConfig
from edge_ad.types import Frame
from tests.support.broker import Recorder
from tests.support.genicam import FakeCamera, read_frames
from tests.support.messages import check_message
from tests.support.notify import NotifySocket
from tests.support.station import edge_ad, start_daemon, station_config

pytestmark = pytest.mark.integration


def camera_config(tmp_path: Path, tiny_models: Path, port: int, station: str, genicam: dict, **sections) -> Path:
    return station_config(
        tmp_path, "genicam://Aravis-Fake-EDGEAD01", tiny_models / "tiny", port, station=station,
        **{"camera": {"reconnect_max_s": 1, "genicam": genicam, **sections.pop("camera", {})},
           "service": {"stats_interval_s": 0.3, **sections.pop("service", {})}, **sections},
    )  # fmt: skip


@contextlib.contextmanager
def running(config: Path) -> Iterator[subprocess.Popen]:
    """The station as a real process; stopped with SIGTERM, and it must stop cleanly."""
    proc = start_daemon(config)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        _, proc.stderr_text = proc.communicate(timeout=30)
    assert proc.returncode == 0, proc.stderr_text
    assert "Traceback" not in proc.stderr_text


def read_back(feature: str) -> float | str:
    """A feature's value as the camera holds it now (opened after the station released it)."""
    camera = aravis().Camera.new("Aravis-Fake-EDGEAD01")
    device = camera.get_device()
    try:
        if feature == "TriggerSource":
            return device.get_string_feature_value(feature)
        return (
            device.get_float_feature_value(feature)
            if feature.endswith("Abs")
            else device.get_integer_feature_value(feature)
        )
    finally:
        device.leave_control()


def online(rec: Recorder) -> bool:
    statuses = rec.on("status")
    return bool(statuses) and statuses[-1]["state"] == "online"


def test_free_run_frames_are_judged_with_the_cameras_frame_id_and_timestamp(
    fake_camera, tiny_models, mosquitto, tmp_path
):
    """Exposure, gain, packet size and delay are set (read back from the camera), the frames are judged and
    published with the camera's own frame id and timestamp next to the host's, and the stream counters are in
    the stats."""
    settings = {"exposure_us": 2500, "gain_db": 3, "pixel_format": "Mono8"}
    settings |= {"packet_size": 1200, "packet_delay_ns": 4000}  # GigE: packets of 1200 bytes, 4 µs apart
    config = camera_config(tmp_path, tiny_models, mosquitto.port, "gige-free", settings, camera={"fps": 20})
    with Recorder(mosquitto, topic="edge_ad/gige-free/#") as rec, running(config):
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 15, timeout=30)
        assert rec.wait_for(lambda r: any(s.get("camera_counters") for s in r.on("stats")), timeout=5)
    assert read_back("ExposureTimeAbs") == 2500 and read_back("GainRaw") == 3
    assert read_back("GevSCPSPacketSize") == 1200 and read_back("GevSCPD") > 0, "GigE packet size and delay"
    verdicts = rec.on("verdict")
    for v in verdicts:
        check_message("verdict", v)
        assert abs(v["camera"]["timestamp_ns"] / 1e9 - v["ts"]) < 2, "the fake camera's clock is the host's"
    ids = [v["camera"]["frame_id"] for v in verdicts]
    assert all(b > a for a, b in itertools.pairwise(ids)), f"frame ids not increasing: {ids}"
    assert [v["seq"] for v in verdicts] == list(range(1, len(verdicts) + 1))
    counters = [s["camera_counters"] for s in rec.on("stats") if s.get("camera_counters")][-1]
    check_message("stats", rec.on("stats")[-1])
    # on loopback nothing is lost, unless the machine is loaded: a CI run beside other tests once lost one frame's
    # packet (counted, never judged: test_incomplete_frames_are_counted_and_never_delivered holds that)
    assert counters["incomplete_frames"] + counters["missing_frames"] <= 1, counters
    assert {"resend_requests", "resent_packets", "missing_packets"} <= set(counters), "GigE packet statistics"


def test_software_trigger_ids_are_matched_to_frames_one_to_one(fake_camera, tiny_models, mosquitto, tmp_path):
    """100 MQTT triggers, sent ten at a time: each fires the camera once and gets the frame it produced; the
    camera takes no frame of its own accord (consecutive frame ids), none is lost, none answered twice."""
    config = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-soft", {"trigger": "software", "exposure_us": 1000},
        service={"mode": "triggered"},
    )  # fmt: skip
    send = {"qos": 1, "hostname": mosquitto.host, "port": mosquitto.port}
    sent: list[str | int] = []
    with Recorder(mosquitto, topic="edge_ad/gige-soft/#") as rec, running(config):
        assert rec.wait_for(online, timeout=30)
        time.sleep(1.0)
        assert rec.on("verdict") == [], "a software-triggered camera takes no frame without a trigger"
        for burst in range(10):
            ids = [f"P-{burst}-{i}" if i % 2 else burst * 10 + i for i in range(10)]  # strings and integers
            messages = [("edge_ad/gige-soft/trigger", json.dumps({"id": i}), 1, False) for i in ids]
            mqtt_publish.multiple(messages, hostname=mosquitto.host, port=mosquitto.port)
            sent += ids
            want = len(sent)
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= want, timeout=30), f"burst {burst}"  # noqa: B023
        mqtt_publish.single("edge_ad/gige-soft/trigger", b'{"id": "last"}', **send)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 101, timeout=10)
        assert rec.wait_for(lambda r: (r.on("stats")[-1].get("triggers") or {}).get("accepted") == 101, timeout=5)
    verdicts = rec.on("verdict")
    assert [v["verdict"] for v in verdicts].count("ERROR") == 0, [v for v in verdicts if v["verdict"] == "ERROR"]
    assert [v["trigger"]["id"] for v in verdicts] == [*sent, "last"], "each trigger answered once, in order"
    frame_ids = [v["camera"]["frame_id"] for v in verdicts]
    assert [b - a for a, b in itertools.pairwise(frame_ids)] == [1] * 100, frame_ids
    final = rec.on("stats")[-1]
    assert final["triggers"]["expired"] == 0 and final["camera_counters"]["lost_triggers"] == 0


def test_a_camera_pulled_and_plugged_back_is_reopened_and_reconfigured(fake_camera, tiny_models, mosquitto, tmp_path):
    """Kill the camera: camera_offline within 5 s. Start it again (it forgot its settings): the station reopens
    it, sets the exposure again and judges on, the sequence gap-free, without a restart."""
    config = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-replug", {"exposure_us": 3000}, camera={"fps": 10}
    )
    with Recorder(mosquitto, topic="edge_ad/gige-replug/#") as rec, running(config):
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= 5, timeout=30)
        fake_camera.kill()
        gone = time.monotonic()
        assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "camera_offline", timeout=10)
        assert time.monotonic() - gone <= 5, f"offline after {time.monotonic() - gone:.1f} s"
        reason = rec.on("status")[-1]["reason"]
        assert "Aravis Fake" in reason, reason
        count = len(rec.on("verdict"))
        fake_camera.start()
        assert rec.wait_for(online, timeout=20)
        assert rec.wait_for(lambda r: len(r.on("verdict")) >= count + 5, timeout=15)
    assert read_back("ExposureTimeAbs") == 3000, "the restarted camera was configured again"
    seqs = [v["seq"] for v in rec.on("verdict")]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence gap-free across the outage"
    frame_ids = [v["camera"]["frame_id"] for v in rec.on("verdict")]
    assert frame_ids[count] < frame_ids[count - 1], "after the restart the camera counts its frames from 1 again"


def test_an_out_of_range_setting_is_refused_with_one_line(fake_camera, tiny_models, mosquitto, tmp_path):
    config = camera_config(tmp_path, tiny_models, mosquitto.port, "gige-bad", {"exposure_us": 1e9})
    run = edge_ad("run", "--config", str(config), timeout=60)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "exposure_us" in lines[0] and "10..1e+07" in lines[0] and "Aravis Fake SN EDGEAD01" in lines[0], lines[0]


def test_a_camera_held_by_another_application_is_named_so(fake_camera, tiny_models, mosquitto, tmp_path):
    """A vendor viewer holding the control channel: the station says so instead of fighting over the camera."""
    config = camera_config(tmp_path, tiny_models, mosquitto.port, "gige-held", {})
    viewer = aravis().Camera.new(fake_camera.device_id)
    try:
        assert viewer.get_device().is_controller()
        run = edge_ad("run", "--config", str(config), timeout=60)
    finally:
        viewer.get_device().leave_control()
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert "in use by another application" in run.stderr, run.stderr


def test_a_line_triggered_camera_waiting_for_parts_stays_online(fake_camera, tiny_models, mosquitto, tmp_path):
    """Hardware trigger on the fake camera's only line (Line0; it cannot simulate a pulse): the trigger is set
    up on the camera, no frame comes, and the station stays online well past its stall timeout (the camera
    answers its liveness probe). A line the camera does not have is refused with the ones it has."""
    config = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-line",
        {"trigger": "hardware", "trigger_line": "Line0", "trigger_activation": None}, camera={"stall_timeout_s": 1},
    )  # fmt: skip
    with Recorder(mosquitto, topic="edge_ad/gige-line/#") as rec, running(config):
        assert rec.wait_for(online, timeout=30)
        time.sleep(4)
        assert [s["state"] for s in rec.on("status")].count("camera_offline") == 0, rec.on("status")
        assert rec.on("verdict") == []
    assert read_back("TriggerSource") == "Line0"
    bad = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-line", {"trigger": "hardware", "trigger_line": "Line1"}
    )
    run = edge_ad("run", "--config", str(bad), timeout=60)
    assert run.returncode != 0 and "Line0, Software" in run.stderr and "trigger_line" in run.stderr, run.stderr


def test_incomplete_frames_are_counted_and_never_delivered(tmp_path):
    """A camera losing 0.2 % of its stream packets (the fake camera does not offer packet resends, so a frame that
    lost one stays incomplete): missing packets and incomplete frames are counted, incomplete frames dropped,
    and every frame delivered is whole (the fake camera's test pattern intact)."""
    camera = FakeCamera(lost_per_thousand=2).start()
    try:
        source = open_source(CameraConfig(source="genicam://127.0.0.1", fps=50))
        try:
            frames = read_frames(source, 40)
            counters = source.counters()
        finally:
            source.close()
    finally:
        camera.kill()
    assert len(frames) == 40
    assert counters["missing_packets"] > 0 and counters["incomplete_frames"] > 0, counters
    assert counters["resent_packets"] == 0 and "resend_requests" in counters, counters
    y, x = np.mgrid[0:512, 0:512]
    for frame in frames:  # the fake camera draws a diagonal ramp; a frame missing a packet would break it
        grey = frame.image[..., 0].astype(int)
        assert np.array_equal(grey, (grey[0, 0] + x + y) % 255), f"frame {frame.camera.frame_id} is not whole"


def test_a_trigger_whose_frame_never_comes_is_lost_and_the_next_one_gets_its_own_frame(fake_camera):
    """The camera takes no frame for a trigger (stopped behind the station's back): after frame_timeout_s the
    trigger is counted lost, and the next trigger fires and gets its own frame, not a stale one."""
    lost: list[tuple[object, str]] = []
    source = open_source(
        CameraConfig(source="genicam://127.0.0.1", genicam={"trigger": "software", "frame_timeout_s": 0.3})
    )
    try:
        source.camera.stop_acquisition()  # behind its back: TriggerSoftware now takes no frame
        source.fire("lost", lambda token: True, lambda token, reason: lost.append((token, reason)))
        deadline = time.monotonic() + 5
        while source.counters()["lost_triggers"] == 0 and time.monotonic() < deadline:
            assert not isinstance(source.read(), Frame)
        source.camera.start_acquisition()
        source.fire("next", lambda token: True, lambda token, reason: lost.append((token, reason)))
        got = read_frames(source, 1)
        counters = source.counters()
    finally:
        source.close()
    assert [f.trigger for f in got] == ["next"]
    assert counters["lost_triggers"] == 1 and lost == [("lost", "no frame within 0.3 s of the software trigger")]


def test_a_software_triggered_camera_waiting_for_parts_is_ready_and_feeds_the_watchdog(
    fake_camera, tiny_models, mosquitto, tmp_path
):
    """No part for a while is not a hang: the station says READY and pings systemd's watchdog while its
    camera waits and answers; once the camera is gone the pings stop (systemd restarts it)."""
    notify = NotifySocket(abstract=True, tmp_path=tmp_path)
    config = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-wait", {"trigger": "software"}, service={"mode": "triggered"}
    )
    proc = notify.start_daemon(config, watchdog_usec=1_500_000)  # ping every 0.5 s
    try:
        notify.collect(8)
        ready = notify.with_key("READY")
        assert len(ready) == 1, notify.messages
        pings = [t for t, m in notify.with_key("WATCHDOG") if t > ready[0][0]]
        assert len(pings) >= 6 and max(b - a for a, b in itertools.pairwise(pings)) < 1.5, pings
        fake_camera.kill()
        gone = time.monotonic()
        notify.collect(6)
        late = [t for t, m in notify.with_key("WATCHDOG") if t > gone + 4.5]  # offline within ~3 s, then silence
        assert late == [], "a camera that stopped answering must not keep the watchdog fed"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def test_a_trigger_storm_and_a_dead_camera_never_stall_the_station(fake_camera, tiny_models, mosquitto, tmp_path):
    """300 triggers at once: each answered once, the 64 that may wait get their own frames (the camera never
    fires for triggers already dropped). Then the camera dies while triggers keep coming: MQTT keeps flowing
    (camera_offline within 5 s, every trigger answered), and the station stops promptly."""
    config = camera_config(
        tmp_path, tiny_models, mosquitto.port, "gige-storm", {"trigger": "software", "exposure_us": 1000},
        service={"mode": "triggered"},
    )  # fmt: skip
    topic = "edge_ad/gige-storm/trigger"
    storm = [f"S-{i}" for i in range(300)]
    with Recorder(mosquitto, topic="edge_ad/gige-storm/#") as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(online, timeout=30)
            mqtt_publish.multiple(
                [(topic, json.dumps({"id": i}), 1, False) for i in storm], hostname=mosquitto.host, port=mosquitto.port
            )
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 300, timeout=30), len(rec.on("verdict"))
            fake_camera.kill()
            gone = time.monotonic()
            late = []
            while time.monotonic() - gone < 3:
                late.append(f"L-{len(late)}")
                mqtt_publish.single(
                    topic, json.dumps({"id": late[-1]}), qos=1, hostname=mosquitto.host, port=mosquitto.port
                )
                time.sleep(0.1)
            assert rec.wait_for(lambda r: r.on("status")[-1]["state"] == "camera_offline", timeout=5)
            offline_after = time.monotonic() - gone
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= 300 + len(late), timeout=15)
        finally:
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
            stop_took = time.monotonic() - stopping
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert offline_after <= 5, f"camera_offline only {offline_after:.1f} s after the camera died"
    assert stop_took < 25, f"stopping took {stop_took:.0f} s (systemd's TimeoutStopSec is 30 s)"
    answers = [v for v in rec.on("verdict") if v["trigger"]["id"] in set(storm)]
    ids = [v["trigger"]["id"] for v in answers]
    assert sorted(ids) == sorted(storm), "every trigger of the storm answered exactly once"
    judged = [v for v in answers if v["verdict"] != "ERROR"]
    assert len(judged) >= 50, f"only {len(judged)} of the waiting triggers got their frame"
    frame_ids = [v["camera"]["frame_id"] for v in judged]
    assert all(b != a for a, b in itertools.pairwise(frame_ids)), "two triggers answered with one frame"
    late_answers = [v["trigger"]["id"] for v in rec.on("verdict") if str(v["trigger"]["id"]).startswith("L-")]
    assert sorted(late_answers) == sorted(late), "every trigger sent while the camera died answered once"
