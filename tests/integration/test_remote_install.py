"""cmd/install and cmd/rollback end to end: a real daemon, a real mosquitto that authenticates, a local file server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess

import jsonschema
import pytest

from edge_ad.bundle.signing import load_private_key, new_key_pair
from edge_ad.bundle.store import active_version, list_versions
from edge_ad.publish import load_schema
from tests.support.broker import Recorder, start_mosquitto
from tests.support.files import serve_files
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration
KEY = "3c0f9e1a7b2d4f6e3c0f9e1a7b2d4f6e"


def test_a_technician_installs_a_signed_version_the_daemon_swaps_it_in_and_rolls_back(tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "station", "s3cret"], check=True)
    passwd.chmod(0o644)
    private, public = new_key_pair(tmp_path / "keys", "workstation")
    workstation = tmp_path / "workstation"
    for _ in range(2):  # the workstation's store: tiny v1 and v2, signed
        make_tiny_bundle(workstation, sign=load_private_key(private, "test"))
    station_models = tmp_path / "models" / "tiny"
    station_models.mkdir(parents=True)
    shutil.copytree(workstation / "tiny" / "1", station_models / "1")
    (station_models / "active").symlink_to("1")
    files = tmp_path / "files"
    packed = edge_ad("models", "pack", str(workstation / "tiny" / "2"), "-o", str(files))
    assert packed.returncode == 0 and "manifest_sha256" in packed.stdout, packed.stderr
    frames = write_frames(tmp_path / "frames", [good_image(s) for s in range(700, 704)])
    (tmp_path / "secret.txt").write_text("s3cret\n")
    (tmp_path / "command.key").write_text(KEY + "\n")
    (tmp_path / "broker").mkdir()
    with (
        start_mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\n") as broker,
        serve_files(files) as server,
    ):
        config = station_config(
            tmp_path, str(frames), station_models, broker.port,
            camera={"fps": 20, "loop": True},
            model={"variant": "fp32"},
            service={"stats_interval_s": 1},
            mqtt={"username": "station", "password_file": str(tmp_path / "secret.txt")},
            commands={"secret_file": str(tmp_path / "command.key")},
            security={"trusted_keys": [str(public)]},
            fleet={"accept_installs": True, "url_prefixes": [server.url]},
        )  # fmt: skip

        def login(client) -> None:
            client.username_pw_set("station", "s3cret")

        proc = start_daemon(config)
        try:
            with Recorder(broker, setup=login) as rec:

                def version_in_status(version: str):
                    return lambda r: any(s.get("model", {}).get("version") == version for s in r.on("status")[-1:])

                assert rec.wait_for(version_in_status("1"), timeout=30), rec.on("status")[-1:]
                sent = edge_ad("command", "install", "--config", str(config), "--package",
                               str(files / "tiny-2.tar"), "--base-url", server.url, "--timeout", "60")  # fmt: skip
                assert sent.returncode == 0, sent.stdout + sent.stderr
                replies = [json.loads(line) for line in sent.stdout.splitlines()]
                states = [r["state"] for r in replies]
                assert states == ["downloading", "verifying", "commissioning", "installed"], replies
                assert replies[-1] | {"version": "2", "previous": "1", "active": True, "selftest": True} == replies[-1]
                for reply in replies:
                    jsonschema.validate(reply, load_schema("install-result"))
                assert rec.wait_for(version_in_status("2"), timeout=30), "the daemon did not swap in v2"
                assert rec.wait_for(lambda r: r.on("verdict") and r.on("verdict")[-1]["model"]["version"] == "2")

                back = edge_ad("command", "rollback", "--config", str(config), "--from-version", "2")
                assert back.returncode == 0, back.stdout + back.stderr
                reply = json.loads(back.stdout.splitlines()[-1])
                assert (reply["state"], reply["version"], reply["previous"]) == ("rolled_back", "1", "2")
                jsonschema.validate(reply, load_schema("rollback-result"))
                assert rec.wait_for(version_in_status("1"), timeout=30), "the daemon did not go back to v1"
                again = edge_ad("command", "rollback", "--config", str(config), "--from-version", "2")
                assert again.returncode == 2 and '"state": "rejected"' in again.stdout
                assert rec.wait_for(
                    lambda r: r.on("stats") and r.on("stats")[-1]["commands"] == {"accepted": 2, "rejected": 1},
                    timeout=15,
                ), rec.on("stats")[-1:]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and KEY not in stderr
    assert [p.name for p in list_versions(station_models)] == ["1", "2"] and active_version(station_models) == "1"
