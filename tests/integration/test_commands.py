"""cmd/recalibrate end to end: only commands signed with the station's key run, once, and never from the past."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import paho.mqtt.publish as mqtt_publish
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.bundle.store import list_versions
from edge_ad.service.command_auth import sign_command
from tests.support.broker import Recorder, start_mosquitto
from tests.support.station import edge_ad, station_config
from tests.support.tiny_bundle import good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration
KEY = "9f2c4e0a7b1d3f5e9f2c4e0a7b1d3f5e"


def test_only_signed_commands_run_even_on_a_broker_that_lets_anyone_publish(tmp_path):
    """Found: on a broker allowing anonymous clients an anonymous dry run passed while the camera showed defects,
    and a retained command installed versions 2, 3 and 4 from one message. Now the station checks the signature,
    the timestamp and the nonce itself; the broker's authentication and ACLs are the second layer."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "station", "s3cret"], check=True)
    passwd.chmod(0o644)
    make_tiny_bundle(tmp_path / "models")
    frames = write_frames(tmp_path / "frames", [good_image(s) for s in range(1000, 1012)])
    (tmp_path / "secret.txt").write_text("s3cret\n")
    (tmp_path / "command.key").write_text(KEY + "\n")
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with start_mosquitto(broker_dir, extra=f"allow_anonymous true\npassword_file {passwd}\n") as broker:
        config = station_config(
            tmp_path, str(frames), tmp_path / "models" / "tiny", broker.port,
            camera={"fps": 30, "loop": True},
            recalibration={"mqtt_command": True, "min_frames": 20, "target_false_reject": 0.1},
            mqtt={"username": "station", "password_file": str(tmp_path / "secret.txt")},
            commands={"secret_file": str(tmp_path / "command.key")},
        )  # fmt: skip
        topic = "edge_ad/test-station/cmd/recalibrate"
        anyone = {"hostname": broker.host, "port": broker.port}  # no credentials: this broker lets it publish
        stale = sign_command({"id": "stale", "frames": 40, "interval_s": 0}, KEY.encode())  # left retained
        mqtt_publish.single(topic, stale, qos=1, retain=True, **anyone)  # must never run, at this or any restart
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            with Recorder(broker) as rec:
                assert rec.wait_for(lambda r: any(s["state"] == "online" for s in r.on("status")), timeout=30)
                unsigned = json.dumps({"id": "intruder", "frames": 40, "interval_s": 0})
                mqtt_publish.single(topic, unsigned, qos=1, **anyone)  # the probe's anonymous command
                forged = sign_command({"id": "forged", "frames": 40}, b"x" * 32)
                mqtt_publish.single(topic, forged, qos=1, **anyone)
                rec.client.publish(topic, b"[" * 2000, qos=1)  # used to kill paho's network thread
                rec.client.publish(topic, b"x" * 5000, qos=1)
                bogus = sign_command({"id": "r0", "frames": 40, "bogus": 1}, KEY.encode())
                rec.client.publish(topic, bogus, qos=1)
                rec.client.publish(topic, bogus, qos=1)  # a captured command sent again
                assert rec.wait_for(lambda r: len(r.on("result")) >= 6, timeout=20), rec.on("result")
                sent = edge_ad("command", "recalibrate", "--config", str(config), "--frames", "40",
                               "--interval", "0", "--timeout", "60", timeout=120)  # fmt: skip
                assert sent.returncode == 0, sent.stdout + sent.stderr
                replies = [json.loads(line) for line in sent.stdout.splitlines()]
                states = [r["state"] for r in replies]
                assert states[0] == "collecting" and states[-2:] == ["fitting", "passed"], states
                assert set(states[1:-2]) <= {"collecting"}  # progress, at most twice a second
                assert replies[-1]["version"] == "2" and replies[-1]["active"] is True
                assert (tmp_path / "state" / "recalibration" / replies[-1]["histogram"]).is_file()
                results = rec.on("result")
                reasons = [(m["id"], m["reason"]) for m in results if m["state"] == "rejected" and m["id"]]
                unsigned_reasons = [m["reason"] for m in results if m["state"] == "rejected" and m["id"] is None]
                assert len(unsigned_reasons) == 3 and not any(m["id"] in ("intruder", "stale") for m in results)
                assert unsigned_reasons[0].startswith("not a signed command")
                assert reasons[0][0] == "forged" and reasons[0][1].startswith("signature does not match")  # id echoed
                assert reasons[1][0] == "r0" and "bogus" in reasons[1][1]
                assert reasons[2] == ("r0", "nonce: already used (a replayed command)")
                assert rec.wait_for(
                    lambda r: any(s.get("model", {}).get("version") == "2" for s in r.on("status")), timeout=30
                ), "the daemon did not pick up the recalibrated version"
                assert rec.wait_for(
                    lambda r: r.on("stats") and r.on("stats")[-1]["commands"] == {"accepted": 1, "rejected": 6}
                ), rec.on("stats")[-1:]
                assert rec.on("stats")[-1]["retained_ignored"] == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            mqtt_publish.single(topic, b"", qos=1, retain=True, **anyone)
    assert proc.returncode == 0, stderr
    assert "s3cret" not in stderr and KEY not in stderr and "Traceback" not in stderr
    assert [p.name for p in list_versions(tmp_path / "models" / "tiny")] == ["1", "2"]  # the stale one never ran
    assert load_bundle(tmp_path / "models" / "tiny").manifest.recalibration["source"].startswith("mqtt:cli-")


def test_commands_need_a_key_and_an_authenticating_broker(tmp_path):
    make_tiny_bundle(tmp_path / "models")
    bundle = tmp_path / "models" / "tiny"
    config = station_config(tmp_path, str(tmp_path), bundle, 1883, recalibration={"mqtt_command": True})
    proc = edge_ad("config", "check", str(config))
    assert proc.returncode == 2 and "recalibration.mqtt_command needs mqtt.username" in proc.stderr
    config = station_config(
        tmp_path, str(tmp_path), bundle, 1883, recalibration={"mqtt_command": True}, mqtt={"username": "station"}
    )
    proc = edge_ad("config", "check", str(config))
    assert proc.returncode == 2 and "recalibration.mqtt_command needs commands.secret_file or commands.secret_env" in (
        proc.stderr
    )
