from __future__ import annotations

import json
import stat

import pytest

pytest.importorskip("argon2")

from edge_ad.console.users import User, add_user, list_users, remove_user, verify
from edge_ad.errors import ConfigError


def test_add_verify_remove(tmp_path):
    path = tmp_path / "state" / "users.json"
    assert add_user(path, "tom", "correct horse", "technician") is True
    assert verify(path, "tom", "correct horse") == User("tom", "technician")
    assert verify(path, "tom", "wrong horse") is None
    assert verify(path, "nobody", "correct horse") is None
    assert add_user(path, "tom", "another password", "viewer") is False  # a new password and role
    assert verify(path, "tom", "correct horse") is None
    assert verify(path, "tom", "another password") == User("tom", "viewer")
    remove_user(path, "tom")
    assert list_users(path) == []
    with pytest.raises(ConfigError, match="no console user 'tom'"):
        remove_user(path, "tom")


def test_file_holds_no_password_and_is_private(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "vera", "s3cret-Passw0rd", "viewer")
    text = path.read_text()
    assert "s3cret-Passw0rd" not in text
    assert json.loads(text)["vera"]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("tom", "short", "viewer", "at least 8"),
        ("tom", "long enough", "admin", "role 'admin'"),
        ("../tom", "long enough", "viewer", "user name"),
        ("", "long enough", "viewer", "user name"),
    ],
)
def test_refused_users(tmp_path, name, password, role, message):
    path = tmp_path / "users.json"
    with pytest.raises(ConfigError, match=message):
        add_user(path, name, password, role)
    assert not path.exists()


def test_a_broken_file_is_one_line(tmp_path):
    path = tmp_path / "users.json"
    path.write_text('{"tom": {"hash": "x", "role": "root"}}')
    with pytest.raises(ConfigError, match="not a console users file"):
        verify(path, "tom", "whatever1")


def test_viewer_and_technician_rights():
    assert User("t", "technician").may("viewer") and User("t", "technician").may("technician")
    assert User("v", "viewer").may("viewer") and not User("v", "viewer").may("technician")
