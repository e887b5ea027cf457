from __future__ import annotations

import io

import pytest

from edge_ad.config import OpcUaUser
from edge_ad.errors import ConfigError
from edge_ad.opcua.auth import Logins, hash_password, main, verify_password


def test_a_hash_verifies_its_password_only():
    encoded = hash_password("s3cret")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded) and not verify_password("", encoded)
    assert hash_password("s3cret") != encoded  # a fresh salt every time
    assert not verify_password("s3cret", "scrypt$16384$8$1$!!$!!")  # damaged hash: no, not an exception


def test_logins_from_a_hash_a_file_and_the_environment(tmp_path, monkeypatch):
    (tmp_path / "scada.pw").write_text("from-file\nignored second line\n")
    monkeypatch.setenv("PLC_PW", "from-env")
    logins = Logins(
        [
            OpcUaUser(name="hmi", password_hash=hash_password("hashed")),
            OpcUaUser(name="scada", password_file=tmp_path / "scada.pw"),
            OpcUaUser(name="plc", password_env="PLC_PW"),
        ]
    )
    assert logins.names == ["hmi", "plc", "scada"]
    assert logins.check("hmi", "hashed") and logins.check("scada", "from-file") and logins.check("plc", "from-env")
    for name, password in [("hmi", "from-env"), ("plc", "hashed"), ("nobody", "hashed"), ("", ""), ("plc", None)]:
        assert not logins.check(name, password), (name, password)
    assert not logins.check("plc", "x" * 5000)  # oversized: refused before hashing


def test_a_password_file_in_the_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "opcua-plc").write_text("systemd-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Logins([OpcUaUser(name="plc", password_file="opcua-plc")]).check("plc", "systemd-secret")


def test_an_unreadable_password_is_one_line_naming_the_user(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"opcua.users\[0\].password_file: cannot read .*missing"):
        Logins([OpcUaUser(name="plc", password_file=tmp_path / "missing")])
    monkeypatch.delenv("NOT_SET_PW", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_PW is not set"):
        Logins([OpcUaUser(name="plc", password_env="NOT_SET_PW")])


def test_the_hash_tool_prints_a_config_entry(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("typed secret\n"))
    assert main(["plc", "--stdin"]) == 0
    out = capsys.readouterr().out
    assert "- name: plc" in out
    encoded = out.split("password_hash: '")[1].split("'")[0]
    assert verify_password("typed secret", encoded)
    assert OpcUaUser(name="plc", password_hash=encoded).password_hash == encoded  # the config accepts it
