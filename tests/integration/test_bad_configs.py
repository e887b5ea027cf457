"""Broken station configs through the real CLI: one line naming the key, exit 2, never a traceback."""

from __future__ import annotations

import pytest
import yaml

from tests.support.station import edge_ad

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
