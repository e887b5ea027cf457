"""Broken station configs through the real CLI: one line naming the key, exit 2, never a traceback."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support.station import edge_ad, station_config
from tests.support.tiny_bundle import good_image, write_frames

pytestmark = pytest.mark.integration


def base(tiny_models, tmp_path) -> dict:
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    return {
        "station": "line1",
        "camera": {"source": str(frames)},
        "model": {"path": str(tiny_models / "tiny")},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "service": {"state_dir": str(tmp_path / "state")},
    }


def _set(config: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return config


DELETE = object()
# (what is broken, value, text the one error line must contain)
CASES = [
    ("camera.fsp", 5, "camera.fsp: unknown key; did you mean 'fps'?"),
    ("treshold", 3, "treshold: unknown key"),
    ("station", DELETE, "station: required key is missing"),
    ("station", "line 1/#", "station: String should match pattern"),
    ("station", "x" * 65, "station: String should have at most 64 characters"),
    ("camera", DELETE, "camera: required key is missing"),
    ("camera.fps", 0, "camera.fps: Input should be greater than 0"),
    ("camera.fps", "fast", "camera.fps: Input should be a valid number"),
    ("camera.loop", "sometimes", "camera.loop: Input should be a valid boolean"),
    ("model.path", DELETE, "model.path: required key is missing"),
    ("model.device", "TPU", "model.device: String should match pattern"),
    ("model.variant", "int4", "model.variant: Input should be 'auto', 'fp32', 'int8', 'bf16' or 'f16'"),
    ("model.min_agreement", 0.2, "model.min_agreement: Input should be greater than or equal to 0.5"),
    ("model.infer_requests", 0, "model.infer_requests: Input should be greater than or equal to 1"),
    ("mqtt.port", 70000, "mqtt.port: Input should be less than or equal to 65535"),
    ("mqtt.qos", 2, "mqtt.qos"),
    ("mqtt.password_env", "PW", "mqtt: Value error, a password needs a username"),
    ("mqtt.tls", {"ca": "ca.pem", "cert": "c.pem"}, "mqtt.tls: Value error, cert and key go together"),
    ("service.mode", "burst", "service.mode: Input should be 'free_run' or 'triggered'"),
    ("service.every_nth", -1, "service.every_nth: Input should be greater than or equal to 1"),
    ("service.debounce", {"n": 2}, "service.debounce.m: required key is missing"),
    ("service.log_level", "LOUD", "service.log_level: Input should be"),
    ("recalibration.target_false_reject", 1.5, "recalibration.target_false_reject: Input should be less than 1"),
    ("recalibration.mqtt_command", True, "recalibration.mqtt_command needs mqtt.username"),
    ("evidence.max_files", "many", "evidence.max_files: Input should be a valid integer"),
    (
        "mqtt.connect_timeout_s",
        float("inf"),
        "mqtt.connect_timeout_s: Input should be a finite number",
    ),  # was OverflowError
    ("mqtt.prefix", "plant\x00one", "mqtt.prefix: String should match pattern"),  # the broker refused every connect
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), CASES, ids=[c[0] + ("-del" if c[1] is DELETE else "") for c in CASES]
)
def test_broken_config_gives_one_line_with_the_key(tiny_models, tmp_path, key, value, expected):
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(_set(base(tiny_models, tmp_path), key, value)))
    proc = edge_ad("config", "check", str(path), timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"edge-ad: error: {path}") and expected in lines[0], lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("station: a\n  camera: [\n", "line 2 is not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("", "expected a mapping"),
        ("station: a\nstation: b\n", "duplicate key 'station' (the second would silently win)"),
        ('a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "YAML aliases (*name) are not allowed"),  # the bomb's seed
        (b"station: caf\xe9\n", "not UTF-8 text (byte 12)"),  # was a UnicodeDecodeError traceback
        ("x: " + "y" * 1_000_001, "larger than 1000000"),
    ],
)
def test_unreadable_yaml_gives_one_line(tmp_path, text, expected):
    path = tmp_path / "station.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    proc = edge_ad("config", "check", str(path), timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert expected in proc.stderr and "Traceback" not in proc.stderr


# What `run` would refuse in a schema-valid config. (name, config sections for station_config, the line after
# "edge-ad: error: <file>: " with {t} for tmp_path and ... for OpenSSL's own words)
PREFLIGHT = [
    (
        "model-missing",
        lambda t: {"model": {"path": f"{t}/models/gone"}},
        "model.path: {t}/models/gone: bundle not found; run 'edge-ad export' or fix model.path in the config",
    ),
    (
        "camera-folder-missing",
        lambda t: {"camera": {"source": f"{t}/frames-gone"}},
        "camera.source: {t}/frames-gone does not exist; give a folder of images or a video file "
        "(check the path or mount)",
    ),
    (
        "camera-folder-empty",
        lambda t: {"camera": {"source": f"{t}/empty"}},
        "camera.source: folder {t}/empty has no images (.png/.jpg/.bmp/.tif)",
    ),
    (
        "password-file-missing",
        lambda t: {"mqtt": {"username": "line1", "password_file": f"{t}/mqtt-password"}},
        "mqtt.password_file: cannot read {t}/mqtt-password (No such file or directory); put the password on the "
        "file's first line (under systemd a relative path is read from $CREDENTIALS_DIRECTORY)",
    ),
    (
        "tls-ca-garbage",
        lambda t: {"mqtt": {"tls": {"ca": f"{t}/garbage.pem"}}},
        "mqtt.tls: cannot load the certificates ([X509: NO_CERTIFICATE_OR_CRL_FOUND]...); "
        "give PEM files that exist and parse (openssl x509 -in FILE -noout)",
    ),
    (
        "state-dir-under-a-file",
        lambda t: {"service": {"state_dir": f"{t}/afile/state"}},
        "service.state_dir: cannot create {t}/afile/state: {t}/afile is not a directory; "
        "set service.state_dir to a writable directory",
    ),
    (
        "defects-root-missing",
        lambda t: {"recalibration": {"defects_root": f"{t}/defects"}},
        "recalibration.defects_root: {t}/defects is not an existing folder; create it or fix the path",
    ),
]


def _station(tmp_path: Path, tiny_models: Path, **sections) -> Path:
    """A good station (frames, the tiny bundle) with ``sections`` merged in, and the files PREFLIGHT breaks with."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "empty").mkdir()
    frames = write_frames(tmp_path / "frames", [good_image(0)])
    return station_config(tmp_path, str(frames), tiny_models / "tiny", 1883, **sections)


def _problems(proc, config: Path) -> list[str]:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert "OK" not in proc.stdout, proc.stdout
    prefix = f"edge-ad: error: {config}: "
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith(prefix) for line in lines), proc.stderr
    return [line.removeprefix(prefix) for line in lines]


def _matches(line: str, expected: str, t: Path) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in expected.format(t=t).split("...")), line) is not None


@pytest.mark.parametrize(("name", "sections", "expected"), PREFLIGHT, ids=[c[0] for c in PREFLIGHT])
def test_config_check_refuses_what_run_refuses(tiny_models, tmp_path, name, sections, expected):
    config = _station(tmp_path, tiny_models, **sections(tmp_path))
    problems = _problems(edge_ad("config", "check", str(config), timeout=60), config)
    assert len(problems) == 1 and _matches(problems[0], expected, tmp_path), problems


def test_config_check_reports_every_problem(tiny_models, tmp_path):
    cases = [c for c in PREFLIGHT if c[0] != "camera-folder-empty"]  # one camera.source
    merged: dict = {}
    for _, sections, _ in cases:
        for key, value in sections(tmp_path).items():
            merged[key] = {**merged.get(key, {}), **value}
    config = _station(tmp_path, tiny_models, **merged)
    problems = _problems(edge_ad("config", "check", str(config), timeout=60), config)
    assert len(problems) == len(cases), problems
    for line, (_, _, expected) in zip(problems, cases, strict=True):
        assert _matches(line, expected, tmp_path), line


def test_good_config_prints_ok_and_creates_nothing(tiny_models, tmp_path):
    config = _station(tmp_path, tiny_models, mqtt={"username": "line1", "password_file": "mqtt-password"})
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    proc = edge_ad("config", "check", str(config), timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert proc.stdout.startswith(f"{config}: OK (station test-station); files and directories checked for user ")
    assert "s3cret" not in proc.stdout and not (tmp_path / "state").exists()  # run creates it, the check does not


def test_state_dir_not_writable_by_the_service_user(tiny_models, tmp_path):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    if nobody.pw_uid == os.geteuid():
        pytest.skip("running as nobody")
    state = Path(tempfile.mkdtemp(prefix="edge-ad-state-"))  # outside pytest's private (0700) tmp root
    try:
        state.chmod(0o755)  # owned by this user: 'nobody' may enter but not write
        config = _station(tmp_path, tiny_models, service={"state_dir": str(state)})
        assert edge_ad("config", "check", str(config), timeout=60).returncode == 0  # fine for this user
        problems = _problems(edge_ad("config", "check", str(config), "--user", "nobody", timeout=60), config)
        assert (
            f"service.state_dir: user nobody cannot write to {state} (permissions of {state}); "
            "give nobody write access (chown/chmod) or set service.state_dir to a writable directory"
        ) in problems, problems
    finally:
        shutil.rmtree(state)


def test_unknown_service_user(tiny_models, tmp_path):
    config = _station(tmp_path, tiny_models)
    proc = edge_ad("config", "check", str(config), "--user", "no-such-user-edge-ad", timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "edge-ad: error: --user no-such-user-edge-ad: no such user; give the User= of the unit (edge-ad)"
    )
