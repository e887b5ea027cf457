from __future__ import annotations

from pathlib import Path

import pytest

from edge_ad.config import load_config
from edge_ad.errors import ConfigError

GOOD = """\
station: line3-cam1
camera:
  source: frames
  fps: 5
model:
  path: ../models/brick
mqtt:
  port: 1884
service:
  state_dir: state
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_relative_paths_against_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.station == "line3-cam1"
    assert config.camera.source == str(tmp_path / "frames")
    assert config.model.path == tmp_path / "../models/brick"
    assert config.service.state_dir == tmp_path / "state"
    assert config.mqtt.port == 1884 and config.mqtt.qos == 1 and config.model.device == "CPU"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),  # URL kept as is
        ("/dev/video0", "/dev/video0"),  # device path kept as is
        (0, 0),  # device index stays an int
    ],
)
def test_camera_sources_that_are_not_paths_are_kept(tmp_path, source, expected):
    text = GOOD.replace("source: frames", f"source: {source}")
    assert load_config(write(tmp_path, text)).camera.source == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("5", "5"), ("'5'", "5"), ("3.1.1", "3.1.1"), ("auto", "auto"), (None, "auto")]
)
def test_the_mqtt_protocol_is_read_as_yaml_writes_it(tmp_path, value, expected):
    text = GOOD if value is None else GOOD.replace("port: 1884", f"port: 1884\n  protocol: {value}")
    config = load_config(write(tmp_path, text))
    assert config.mqtt.protocol == expected and config.mqtt.session_expiry_s == 3600


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("fps: 5", "fsp: 5"), "camera.fsp: unknown key; did you mean 'fps'?"),  # typo suggests the key
        (("station: line3-cam1\n", "station: line3-cam1\ntreshold: 3\n"), "treshold: unknown key"),
        (("port: 1884", "port: 70000"), "mqtt.port: Input should be less than or equal to 65535"),
        (("fps: 5", "fps: 0"), "camera.fps: Input should be greater than 0"),
        (("station: line3-cam1\n", ""), "station: required key is missing"),
        (("station: line3-cam1", "station: 'line 3/#'"), "station: String should match pattern"),
        (("  path: ../models/brick\n", "  path: m\n  device: TPU\n"), "model.device: String should match"),
        (
            ("port: 1884", "port: 1884\n  tls: {ca: ca.pem, cert: c.pem}"),
            "mqtt.tls: Value error, cert and key go together",
        ),
        (("port: 1884", "port: 1884\n  password_env: PW"), "mqtt: Value error, a password needs a username"),
        (("port: 1884", "port: 1884\n  username: u\n  password_env: PW\n  password_file: f"), "not both"),
        (("port: 1884", "port: 1884\n  protocol: 3"), "mqtt.protocol: Input should be 'auto', '3.1.1' or '5'"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, edit, expected):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="line 2 is not valid YAML"):
        load_config(write(tmp_path, "station: a\n  camera: [\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
