"""Evidence on a real tiny filesystem (tmpfs) that fills up: verdicts continue, evidence is pruned,
the alarm is on the retained status and clears when space returns."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from edge_ad.publish import load_schema
from tests.integration.test_daemon_mqtt import start_daemon
from tests.support.broker import Recorder
from tests.support.station import station_config
from tests.support.tiny_bundle import defect_image, write_frames

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root / CAP_SYS_ADMIN, which CI has)."""
    mount = tmp_path / "evidence"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int) -> Path:
    """A foreign file that takes all but ``leave`` bytes of the filesystem."""
    filler = mount / "other-process.dat"
    with filler.open("wb") as f:
        f.write(b"\0" * (shutil.disk_usage(mount).free - leave))
    return filler


def test_full_evidence_disk_keeps_verdicts_flowing_and_raises_an_alarm(tiny_models, mosquitto, tmp_path, tiny_fs):
    filler = fill(tiny_fs, leave=64 * 1024)
    folder = write_frames(tmp_path / "frames", [defect_image(600 + i) for i in range(5)])  # every frame is NG
    config = station_config(
        tmp_path, str(folder), tiny_models / "tiny", mosquitto.port, station="disk-station",
        camera={"fps": 30, "loop": True},
        evidence={"dir": str(tiny_fs), "min_free_mb": 0},
        service={"state_dir": str(tmp_path / "state"), "stats_interval_s": 0.3},
    )  # fmt: skip
    with Recorder(mosquitto, topic="edge_ad/disk-station/#") as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: any("disk" in s for s in r.on("status")), timeout=30), proc.stderr
            raised = next(s for s in rec.on("status") if "disk" in s)
            assert "No space left on device" in raised["disk"]["message"] and str(tiny_fs) in raised["reason"]
            count = len(rec.on("verdict"))
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= count + 20, timeout=15), "verdicts stopped"
            assert rec.wait_for(lambda r: r.on("stats") and r.on("stats")[-1]["evidence"]["pruned"] > 0)
            assert rec.on("stats")[-1]["evidence"]["errors"] > 0
            assert "disk" in rec.on("status")[-1], "the alarm must stay raised while the disk is full"
            filler.unlink()  # space returns
            assert rec.wait_for(lambda r: "disk" not in r.on("status")[-1], timeout=10)
            kept = len(list(tiny_fs.glob("*.jpg")))
            assert rec.wait_for(lambda r: len(list(tiny_fs.glob("*.jpg"))) >= kept + 10, timeout=10)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    seqs = [v["seq"] for v in rec.on("verdict")]
    assert seqs == list(range(1, len(seqs) + 1)) and all(v["verdict"] == "NG" for v in rec.on("verdict"))
    for status in rec.on("status"):
        jsonschema.validate(status, load_schema("status"))
    for stats in rec.on("stats"):
        jsonschema.validate(stats, load_schema("stats"))


def test_full_state_disk_with_broker_down_keeps_verdicts_in_memory_and_delivers_them(tiny_models, tmp_path, tiny_fs):
    """Found: a full state filesystem while the broker was down ended the daemon ("database or disk is full",
    then "cannot rollback") after 725 verdicts. Now the newest verdicts wait in memory with an alarm on the
    status, reach the broker when it is back, and move to disk when space returns; nothing is lost."""
    from tests.support.broker import start_mosquitto
    from tests.support.net import free_port

    port, broker_dir = free_port(), tmp_path / "broker"
    broker_dir.mkdir()
    frames = write_frames(tmp_path / "frames", [defect_image(600 + i) for i in range(3)])
    config = station_config(
        tmp_path, str(frames), tiny_models / "tiny", port, station="full-state",
        camera={"fps": 20, "loop": True}, mqtt={"connect_timeout_s": 1},
        service={"state_dir": str(tiny_fs), "stats_interval_s": 0.3},
    )  # fmt: skip
    proc = start_daemon(config)
    try:
        time.sleep(4)  # broker down: verdicts go to the spool on the tiny filesystem
        filler = fill(tiny_fs, leave=0)
        time.sleep(3)  # ...and now to memory
        assert proc.poll() is None, proc.communicate()[1]
        with start_mosquitto(broker_dir, port) as broker, Recorder(broker, topic="edge_ad/full-state/#") as rec:
            assert rec.wait_for(lambda r: any("spool" in s for s in r.on("status")), timeout=20), "no spool alarm"
            raised = next(s for s in rec.on("status") if "spool" in s)
            assert "database or disk is full" in raised["spool"]["message"] and raised["state"] == "online"
            count = len(rec.on("verdict"))
            assert rec.wait_for(lambda r: len(r.on("verdict")) >= count + 20, timeout=15), "verdicts stopped"
            filler.unlink()  # space returns
            assert rec.wait_for(lambda r: "spool" not in r.on("status")[-1], timeout=10), "alarm did not clear"
            assert rec.wait_for(lambda r: r.on("stats") and r.on("stats")[-1]["spool"]["in_memory"] == 0)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "cannot be written" in stderr
    first_seen = list(dict.fromkeys(v["seq"] for v in rec.on("verdict")))
    assert first_seen == list(range(1, len(first_seen) + 1)), "lost or reordered verdicts"
    assert rec.on("stats")[-1]["spool"]["dropped"] == 0
    for message, kind in [*((s, "status") for s in rec.on("status")), *((s, "stats") for s in rec.on("stats"))]:
        jsonschema.validate(message, load_schema(kind))
