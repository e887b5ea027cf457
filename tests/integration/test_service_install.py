"""install-service / uninstall-service into a scratch root, systemd-analyze on the units, and `edge-ad status`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edge_ad.bundle import load_bundle
from edge_ad.commissioning import read_record
from edge_ad.types import round_score
from tests.support.broker import Recorder
from tests.support.station import edge_ad, station_config
from tests.support.tiny_bundle import good_image, write_frames

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def verify(unit_dir: Path, unit: str, instance: str) -> subprocess.CompletedProcess:
    """systemd-analyze verify on an instance of a template unit (no warnings allowed)."""
    work = unit_dir.parent / "verify"
    work.mkdir(exist_ok=True)
    link = work / unit.replace("@.", f"@{instance}.")
    shutil.copyfile(unit_dir / unit, work / unit)
    if not link.exists():
        link.symlink_to(work / unit)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(link)], capture_output=True, text=True)


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (scripts/setup.sh installs systemd)"
)
def test_install_writes_config_units_user_and_enables_then_uninstall_removes(tmp_path, tiny_models):
    root = tmp_path / "root"
    proc = edge_ad("install-service", "line3-cam1", "--root", str(root), "--bundle", str(tiny_models / "tiny"))
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((root / "etc/edge-ad/line3-cam1.yaml").read_text())
    assert config["station"] == "line3-cam1" and config["model"]["path"] == "/var/lib/edge-ad/models/tiny"
    assert config["service"]["state_dir"] == "/var/lib/edge-ad/line3-cam1"
    assert "(not started: its config is the template)" in proc.stdout, "a template config is edited before a start"
    key = root / "var/lib/edge-ad/keys/line3-cam1.key"
    assert config["security"]["station_key"] == "/var/lib/edge-ad/keys/line3-cam1.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert (root / "var/lib/edge-ad/models/tiny/active").is_symlink()
    assert "u edge-ad" in (root / "etc/sysusers.d/edge-ad.conf").read_text()
    units = root / "etc/systemd/system"
    wants = units / "multi-user.target.wants/edge-ad@line3-cam1.service"
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/edge-ad@.service"
    text = (units / "edge-ad@.service").read_text()
    assert "/opt/edge-ad" not in text and "edge-ad run --config /etc/edge-ad/%i.yaml" in text
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "ProtectSystem=strict",
                "PrivateTmp=yes", "NoNewPrivileges=yes", "DeviceAllow=char-video4linux rw", "SupplementaryGroups=video",
                "RestrictAddressFamilies=", "StateDirectory=", "CacheDirectory=", "LogsDirectory="):  # fmt: skip
        assert key in text, key
    for unit in ("edge-ad@.service", "edge-ad-recalibrate@.service"):
        result = verify(units, unit, "line3-cam1")
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr

    (root / "etc/edge-ad/line3-cam1.yaml").write_text("station: line3-cam1  # edited\n")
    again = edge_ad("install-service", "line3-cam1", "--root", str(root))
    assert again.returncode == 0 and "kept" in again.stdout
    assert "started  edge-ad@line3-cam1 with its existing config" in again.stdout
    assert "edited" in (root / "etc/edge-ad/line3-cam1.yaml").read_text(), "an existing config is never overwritten"

    gone = edge_ad("uninstall-service", "line3-cam1", "--root", str(root))
    assert gone.returncode == 0, gone.stderr
    assert not wants.exists() and not (units / "edge-ad@.service").exists()
    assert (root / "etc/edge-ad/line3-cam1.yaml").exists(), "config kept unless --purge"


def test_install_rejects_a_bad_station_name(tmp_path):
    proc = edge_ad("install-service", "../etc", "--root", str(tmp_path))
    assert proc.returncode == 2 and "not a valid station name" in proc.stderr


def test_status_shows_one_readable_screen(tiny_models, mosquitto, tmp_path):
    frames = write_frames(tmp_path / "frames", [good_image(700 + i) for i in range(5)])
    config = station_config(tmp_path, str(frames), tiny_models / "tiny", mosquitto.port, station="status-line")
    with Recorder(mosquitto, topic="edge_ad/status-line/#") as rec:
        assert edge_ad("run", "--config", str(config)).returncode == 0
        assert rec.wait_for(lambda r: r.on("stats"))
    proc = edge_ad("status", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "station    status-line    state OFFLINE" in out
    record = read_record(tmp_path / "state", load_bundle(tiny_models / "tiny"))
    chosen, precision = record.chosen, record.candidates[record.chosen].precision
    assert (
        f"model      tiny v1 variant {chosen} in {precision} on CPU" in out and "NG 0.0 %" in out and "frames 5" in out
    )
    assert f"cpu        {' '.join(record.key.cpu_flags) or 'no avx2/avx512/amx'}    plugin default precision" in out
    assert f"commission auto runs {chosen} ({record.at}): " in out and "ALARM" not in out
    threshold = round_score(record.candidates[chosen].threshold)  # the running variant's, rounded as published
    assert f"threshold {threshold}" in out and f"threshold {record.candidates[chosen].threshold}" not in out
    assert "last error source exhausted" in out and "drift      none" in out
    # mqtt.protocol auto with mosquitto: MQTT 5 (the final stats may still count a verdict in flight)
    assert re.search(r"^mqtt       5    \d+ verdicts waiting", out, re.M), out
    assert f"local      {tiny_models / 'tiny'} active v1" in out


def test_status_with_the_broker_down_is_one_clear_line(tiny_models, tmp_path):
    from tests.support.net import free_port

    config = station_config(tmp_path, str(tmp_path), tiny_models / "tiny", free_port())
    proc = edge_ad("status", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("edge-ad: error: mqtt: broker 127.0.0.1:")
