from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edge_ad.config import EdgeAdConfig, load_config
from edge_ad.config.reference import render_reference
from edge_ad.opcua.auth import hash_password

BASE = {"station": "line3-cam1", "camera": {"source": 0}, "model": {"path": "/models/brick"}}
PLC = {"name": "plc", "password_env": "PLC_PASSWORD"}


def config(**opcua) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate({**BASE, "opcua": opcua})


def test_off_by_default_anonymous_refused_and_encrypted_endpoints_only():
    opcua = EdgeAdConfig.model_validate(BASE).opcua
    assert not opcua.enabled and not opcua.allow_anonymous and opcua.users == []
    assert opcua.security_policies == ["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"]
    assert (opcua.host, opcua.port) == ("127.0.0.1", 4840)


def test_enabled_needs_a_way_to_log_in():
    with pytest.raises(ValidationError, match="nobody could log in"):
        config(enabled=True)
    assert config(enabled=True, users=[PLC]).opcua.enabled
    assert config(enabled=True, allow_anonymous=True).opcua.enabled


@pytest.mark.parametrize(
    ("opcua", "message"),
    [
        ({"endpoint": "tcp://1.2.3.4:4840/"}, "not an endpoint"),  # not opc.tcp
        ({"endpoint": "opc.tcp://:4840/"}, "not an endpoint"),  # no host
        ({"endpoint": "opc.tcp://host/"}, "not an endpoint"),  # no port
        ({"endpoint": "opc.tcp://host:99999/"}, "not an endpoint"),  # port out of range
        ({"endpoint": "opc.tcp://host:4840/a b"}, "spaces or control"),
        ({"security_policies": []}, "at least 1"),
        ({"security_policies": ["Basic128Rsa15_Sign"]}, "security_policies"),  # deprecated: not offered
        ({"security_policies": ["None", "None"]}, "twice"),
        ({"security_policies": ["None"], "users": [PLC]}, "in clear"),  # a password over an open channel
        ({"security_policies": ["None", "Basic256Sha256_Sign"], "users": [PLC]}, "in clear"),
        ({"users": [PLC, PLC]}, "given twice"),
        ({"users": [{"name": "plc"}]}, "exactly one of"),
        ({"users": [{**PLC, "password_file": "pw"}]}, "exactly one of"),
        ({"users": [{"name": "plc", "password_hash": "plain-text"}]}, "password_hash"),
        ({"users": [{"name": "plc", "password_hash": hash_password("x", n=2**4).replace("$16$", "$15$")}]}, "power"),
        ({"certificate": "/etc/cert.der"}, "go together"),
        ({"answer_margin_s": 0}, "answer_margin_s"),
    ],
)
def test_bad_settings_are_refused_with_the_key(opcua, message):
    with pytest.raises(ValidationError, match=message):
        config(**opcua)


def test_none_is_allowed_beside_an_encrypting_policy():
    policies = ["None", "Basic256Sha256_SignAndEncrypt"]
    assert config(enabled=True, users=[PLC], security_policies=policies).opcua.security_policies == policies


def test_relative_files_are_resolved_next_to_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    opcua = {
        "enabled": True,
        "users": [{"name": "plc", "password_file": "plc.pw"}],
        "certificate": "pki/cert.der",
        "private_key": "pki/key.pem",
        "trusted_clients": "pki/trusted",
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({**BASE, "opcua": opcua}))
    loaded = load_config(path).opcua
    assert loaded.users[0].password_file == tmp_path / "plc.pw"
    assert (loaded.certificate, loaded.private_key) == (tmp_path / "pki/cert.der", tmp_path / "pki/key.pem")
    assert loaded.trusted_clients == tmp_path / "pki/trusted"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))  # systemd: looked up there instead
    assert load_config(path).opcua.users[0].password_file == Path("plc.pw")


def test_every_key_of_a_user_is_documented():
    text = render_reference()
    for key in ("name", "password_hash", "password_file", "password_env"):
        assert f"| `opcua.users[].{key}` |" in text
