from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.testclient import TestClient

from edge_ad.bundle.store import active_version
from edge_ad.config import EdgeAdConfig
from edge_ad.console.app import create_app, users_file
from edge_ad.console.users import add_user
from tests.support.tiny_bundle import make_tiny_bundle

PASSWORDS = {"vera": "viewer-pass-1", "tom": "technician-pass-1"}


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory) -> Path:
    """models/tiny with v1 and v2 (v2 active), made once and copied per test."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_bundle(root, "tiny")
    make_tiny_bundle(root, "tiny")
    assert active_version(root / "tiny") == "2"
    return root / "tiny"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def make_config(tmp_path: Path, model_path: Path, **console) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate(
        {
            "station": "press-3",
            "camera": {"source": str(tmp_path / "frames")},
            "model": {"path": str(model_path)},
            "mqtt": {"host": "127.0.0.1", "port": closed_port(), "connect_timeout_s": 1},
            "service": {"state_dir": str(tmp_path / "state")},
            "console": console,
        }
    )


@pytest.fixture
def models(tmp_path, two_versions) -> Path:
    target = tmp_path / "models" / "tiny"
    shutil.copytree(two_versions, target, symlinks=True)
    return target


@pytest.fixture
def config(tmp_path, models) -> EdgeAdConfig:
    config = make_config(tmp_path, models)
    for name, password in PASSWORDS.items():
        add_user(users_file(config), name, password, "viewer" if name == "vera" else "technician")
    return config


@pytest.fixture
def client(config) -> TestClient:
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str | None = None):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password or PASSWORDS[name], "csrf": token})


@pytest.fixture
def logged_in(client) -> Callable[[str], str]:
    """Log ``name`` in; returns the session's CSRF token (from a page after login)."""

    def do(name: str) -> str:
        response = login(client, name)
        assert response.status_code == 303, response.text
        return csrf_of(client.get("/models").text)

    return do
