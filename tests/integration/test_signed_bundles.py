"""Signed bundles through the real CLI and daemon: refused before judging a frame, the running model keeps judging."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jsonschema
import pytest

from edge_ad.bundle import MANIFEST_NAME
from edge_ad.bundle.signing import load_private_key, new_key_pair
from edge_ad.publish import load_schema
from tests.support.broker import Recorder
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    workstation, workstation_pub = new_key_pair(tmp_path / "keys", "workstation")
    station, _ = new_key_pair(tmp_path / "keys", "station")
    return {"workstation": workstation, "public": workstation_pub, "station": station}


def set_threshold(version: Path, value: float) -> None:
    data = json.loads((version / MANIFEST_NAME).read_text())
    for variant in data["variants"].values():
        variant["threshold"]["value"] = value
    (version / MANIFEST_NAME).write_text(json.dumps(data, indent=2))


def test_an_unsigned_bundle_is_refused_at_start_with_one_line(tmp_path, keys):
    make_tiny_bundle(tmp_path / "models")
    config = station_config(tmp_path, str(tmp_path), tmp_path / "models" / "tiny", 1883,
                            security={"trusted_keys": [str(keys["public"])]})  # fmt: skip
    proc = edge_ad("run", "--config", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"edge-ad: error: {tmp_path}/models/tiny/1/manifest.sig: missing: version 1 is not signed and "
        "security.require_signature is on; copy the signed bundle from the workstation (edge-ad export --sign-key)"
    )


def test_tampered_versions_are_refused_at_reload_and_the_running_model_keeps_judging(tmp_path, keys, mosquitto):
    models = tmp_path / "models"
    key = load_private_key(keys["workstation"], "test")
    make_tiny_bundle(models, sign=key)
    frames = write_frames(tmp_path / "frames", [good_image(600 + i) for i in range(3)])
    trusted = {"trusted_keys": [str(keys["public"])]}
    config = station_config(tmp_path, str(frames), models / "tiny", mosquitto.port, station="signed",
                            camera={"fps": 30, "loop": True}, security=trusted)  # fmt: skip

    def versions(r):
        return [v["model"]["version"] for v in r.on("verdict")]

    with Recorder(mosquitto, topic="edge_ad/signed/#") as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: "1" in versions(r), timeout=30), proc.stderr
            assert rec.on("status")[-1]["signature"].startswith("signed by export (key ")
            tampered = make_tiny_bundle(models, sign=key)  # v2, signed, then its thresholds raised to 1e6
            set_threshold(tampered, 1e6)
            assert rec.wait_for(lambda r: "does not match manifest.json" in r.on("status")[-1]["reason"], timeout=15)
            make_tiny_bundle(models)  # v3: not signed
            assert rec.wait_for(lambda r: "v3" not in r.on("status")[-1]["reason"]
                                and "3/manifest.sig: missing" in r.on("status")[-1]["reason"], timeout=15)  # fmt: skip
            count = len(rec.on("verdict"))
            assert rec.wait_for(lambda r: len(r.on("verdict")) > count + 5)
            assert set(versions(rec)) == {"1"}, "no tampered version ever judged a frame"
            make_tiny_bundle(models, sign=key)  # v4: properly signed
            assert rec.wait_for(lambda r: versions(r)[-1] == "4", timeout=15)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    for status in rec.on("status"):
        jsonschema.validate(status, load_schema("status"))


def test_recalibration_is_signed_by_the_station_and_verified_through_its_parent(tmp_path, keys):
    models = tmp_path / "models"
    make_tiny_bundle(models, sign=load_private_key(keys["workstation"], "test"))
    security = {"trusted_keys": [str(keys["public"])], "station_key": str(keys["station"])}
    config = station_config(tmp_path, str(tmp_path), models / "tiny", 1883, security=security,
                            recalibration={"target_false_reject": 0.1})  # fmt: skip
    images = write_frames(tmp_path / "fresh", [good_image(s) for s in range(200, 240)])
    proc = edge_ad("recalibrate", "--config", str(config), "--images", str(images))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verify = edge_ad("models", "verify", "--config", str(config), "--chain")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "manifest.sig: station test-station, key " in verify.stdout and "manifest.sig: export, key " in verify.stdout
    assert "trust    signed by station test-station (key " in verify.stdout and "via v1" in verify.stdout
    listing = edge_ad("models", "list", "--config", str(config))
    assert "* v2" in listing.stdout and "signed by station test-station" in listing.stdout, listing.stdout
    set_threshold(models / "tiny" / "2", 1e6)  # someone with write access to models/
    verify = edge_ad("models", "verify", "--config", str(config))
    assert verify.returncode == 2 and "REFUSED" in verify.stdout and "FAIL" in verify.stderr, verify.stdout
    unsigned = station_config(tmp_path, str(tmp_path), models / "tiny", 1883,
                              recalibration={"target_false_reject": 0.1},
                              security={"trusted_keys": [str(keys["public"])]})  # fmt: skip
    proc = edge_ad("recalibrate", "--config", str(unsigned), "--images", str(images))
    assert proc.returncode == 2 and "security.station_key is not set" in proc.stderr
