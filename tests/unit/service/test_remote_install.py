"""cmd/install and cmd/rollback: only signed versions from allowed servers, commissioned here, installed atomically."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_ad.bundle.package import Package, pack
from edge_ad.bundle.signing import load_private_key, new_key_pair, sign_manifest
from edge_ad.bundle.store import active_version, list_versions, private_copies
from edge_ad.bundle.trust import Trust
from edge_ad.config import EdgeAdConfig
from edge_ad.service import remote_install
from edge_ad.service.command_auth import CommandVerifier, sign_command
from edge_ad.service.download import url_allowed
from edge_ad.service.remote_install import CommandSlot, InstallRunner, RollbackRunner
from tests.support.files import FileServer, serve_files
from tests.support.tiny_bundle import make_tiny_bundle

KEY = b"k" * 32


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A workstation's store (tiny v1 and v2 signed by a trusted key) and packages of v2 in every kind of wrong."""
    root = tmp_path_factory.mktemp("plant")
    trusted, trusted_pub = new_key_pair(root / "keys", "workstation")
    other, _ = new_key_pair(root / "keys", "stranger")
    key = load_private_key(trusted, "test")
    for _ in range(2):
        make_tiny_bundle(root / "store", sign=key)
    v2 = root / "store" / "tiny" / "2"
    files = root / "files"
    packages = {"good": pack(v2, files)}
    for kind in ("unsigned", "stranger", "selftest"):
        copy = root / kind / "tiny" / "2"
        shutil.copytree(v2, copy)
        if kind == "unsigned":
            (copy / "manifest.sig").unlink()
        elif kind == "stranger":
            sign_manifest(copy, load_private_key(other, "test"), "export")
        else:  # signed by the trusted key, but the golden scores are not what this model computes
            manifest = json.loads((copy / "manifest.json").read_text())
            for golden in manifest["golden"]:
                golden["scores"]["fp32"] *= 3
            (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
            sign_manifest(copy, key, "export")
        packages[kind] = pack(copy, files / kind)
    return {"root": root, "public": trusted_pub, "packages": packages, "files": files}


@pytest.fixture
def server(plant) -> Iterator[FileServer]:
    with serve_files(plant["files"]) as files:
        yield files


def make_station(tmp_path: Path, plant: dict, server: FileServer, **fleet) -> EdgeAdConfig:
    """A station running tiny v1 (signed by the trusted key), taking installs from the test's file server."""
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    shutil.copytree(plant["root"] / "store" / "tiny" / "1", model_dir / "1")
    (model_dir / "active").symlink_to("1")
    return EdgeAdConfig.model_validate(
        {
            "station": "s1",
            "camera": {"source": str(tmp_path)},
            "model": {"path": str(model_dir), "variant": "fp32"},  # auto may pick bf16 on a fast CPU: timing
            "mqtt": {"username": "station"},
            "commands": {"secret_env": "UNUSED"},
            "service": {"state_dir": str(tmp_path / "state")},
            "security": {"trusted_keys": [str(plant["public"])]},
            "fleet": {"accept_installs": True, "url_prefixes": [server.url], **fleet},
        }
    )


def runners(config: EdgeAdConfig) -> tuple[InstallRunner, RollbackRunner, list[dict]]:
    replies: list[dict] = []
    trust = Trust.from_config(config.security, private_copies(config.service.state_dir))
    verifier, slot = CommandVerifier(KEY, 60), CommandSlot()
    install = InstallRunner(config, verifier, replies.append, trust=trust, slot=slot)
    rollback = RollbackRunner(config, verifier, replies.append, trust=trust, slot=slot)
    return install, rollback, replies


def offer(package: Package, server: FileServer, **changes) -> bytes:
    body = {
        "id": "o1",
        "rollout": "r7",
        "bundle": package.name,
        "version": package.version,
        "manifest_sha256": package.manifest_sha256,
        "url": server.url_of(package.path),
        "size": package.size,
    }
    return sign_command(body | changes, KEY)


def install(runner: InstallRunner, payload: bytes) -> None:
    runner.on_message(payload)
    runner.join(120)
    assert not runner.busy


def unchanged(config: EdgeAdConfig) -> None:
    """Only v1, still active, and no staging folder left behind."""
    model_dir = config.model.path
    assert [p.name for p in list_versions(model_dir)] == ["1"] and active_version(model_dir) == "1"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "active"]


def test_a_signed_offer_is_installed_under_its_own_number_commissioned_activated_and_rolled_back(
    tmp_path, plant, server
):
    config = make_station(tmp_path, plant, server)
    installer, rollback, replies = runners(config)
    good = plant["packages"]["good"]
    install(installer, offer(good, server))
    assert [r["state"] for r in replies] == ["downloading", "verifying", "commissioning", "installed"]
    assert all(r["id"] == "o1" and r["rollout"] == "r7" and r["offered"] == "2" for r in replies)
    assert replies[-1] | {"ts": 0, "time": ""} == {
        "schema": 2, "id": "o1", "rollout": "r7", "state": "installed", "ts": 0, "time": "", "offered": "2",
        "version": "2", "previous": "1", "active": True, "variant": "fp32", "selftest": True, "acceptance": True,
    }  # fmt: skip
    model_dir = config.model.path
    assert active_version(model_dir) == "2" and sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "active"]
    signed = plant["root"] / "store" / "tiny" / "2"
    for name in ("manifest.json", "manifest.sig"):  # byte for byte as signed: never renumbered
        assert (model_dir / "2" / name).read_bytes() == (signed / name).read_bytes()
    assert list((config.service.state_dir / "commissioning").glob("*.json")), "the reloader reuses this record"
    assert installer.accepted == 1 and installer.rejected == 0

    replies.clear()  # the same offer again: already installed, nothing downloaded
    asked = len(server.requests)
    install(installer, offer(good, server, id="o2"))
    assert [r["state"] for r in replies] == ["verifying", "commissioning", "installed"] and len(
        server.requests
    ) == asked
    assert replies[-1]["previous"] == "2" and replies[-1]["active"] is True

    replies.clear()
    rollback.on_message(sign_command({"id": "b1", "rollout": "r7", "from_version": "2"}, KEY))
    rollback.join(30)
    assert replies[-1] | {"ts": 0, "time": ""} == {
        "schema": 2, "id": "b1", "rollout": "r7", "state": "rolled_back", "ts": 0, "time": "", "version": "1",
        "previous": "2",
    }  # fmt: skip
    assert active_version(model_dir) == "1"
    rollback.on_message(sign_command({"id": "b2", "from_version": "2"}, KEY))  # stale: v2 is not active any more
    assert replies[-1]["state"] == "rejected" and replies[-1]["reason"].startswith("from_version: v2 is not the active")
    assert active_version(model_dir) == "1" and rollback.rejected == 1


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("unsigned", "manifest.sig: missing: version 2 is not signed"),
        ("stranger", "which is not in security.trusted_keys"),
    ],
)
def test_a_version_not_signed_by_a_trusted_key_is_refused_and_nothing_changes(tmp_path, plant, server, kind, reason):
    config = make_station(tmp_path, plant, server)
    installer, _, replies = runners(config)
    install(installer, offer(plant["packages"][kind], server))
    assert [r["state"] for r in replies] == ["downloading", "verifying", "failed"]
    assert reason in replies[-1]["reason"] and "\n" not in replies[-1]["reason"]
    unchanged(config)


def test_an_unsigned_version_is_refused_even_when_signatures_are_not_required(tmp_path, plant, server):
    config = make_station(tmp_path, plant, server)
    config = config.model_copy(update={"security": config.security.model_copy(update={"require_signature": False})})
    installer, _, replies = runners(config)
    install(installer, offer(plant["packages"]["unsigned"], server))
    assert replies[-1]["state"] == "failed" and "v2 is not signed: an install needs" in replies[-1]["reason"]
    unchanged(config)


def test_a_package_with_another_manifest_than_offered_is_refused(tmp_path, plant, server):
    config = make_station(tmp_path, plant, server)
    installer, _, replies = runners(config)
    install(installer, offer(plant["packages"]["good"], server, manifest_sha256=hashlib.sha256(b"x").hexdigest()))
    assert replies[-1]["state"] == "failed" and "its manifest is not the one offered" in replies[-1]["reason"]
    unchanged(config)


def test_a_version_failing_its_self_test_here_is_removed_again(tmp_path, plant, server):
    config = make_station(tmp_path, plant, server)
    installer, _, replies = runners(config)
    install(installer, offer(plant["packages"]["selftest"], server))
    assert [r["state"] for r in replies] == ["downloading", "verifying", "commissioning", "failed"]
    assert replies[-1]["selftest"] is False and replies[-1]["acceptance"] is True
    assert replies[-1]["reason"].startswith("self-test failed")
    unchanged(config)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"url": "http://elsewhere.example/tiny-2.tar"}, "url: not under fleet.url_prefixes"),
        ({"url": "{base}files/../tiny-2.tar"}, "url: not under fleet.url_prefixes"),
        ({"url": "{base}%2e%2e/tiny-2.tar"}, "url: not under fleet.url_prefixes"),
        ({"bundle": "brick"}, "bundle: this station runs 'tiny', not 'brick'"),
        ({"size": 3 * 2**20}, "size: 3 MB, more than fleet.max_package_mb 2"),
        ({"version": "1"}, "holds a different version 1"),
        ({"activate": "yes"}, "activate: Input should be a valid boolean"),
    ],
)
def test_offers_that_cannot_be_installed_are_rejected_at_once(tmp_path, plant, server, changes, reason):
    config = make_station(tmp_path, plant, server, max_package_mb=2)
    installer, _, replies = runners(config)
    changes = {k: v.format(base=server.url) if isinstance(v, str) else v for k, v in changes.items()}
    installer.on_message(offer(plant["packages"]["good"], server, **changes))
    assert [r["state"] for r in replies] == ["rejected"] and reason in replies[0]["reason"]
    assert replies[0]["id"] == "o1" and replies[0]["rollout"] == "r7"
    assert installer.rejected == 1 and not installer.busy and not server.requests
    unchanged(config)


def test_a_download_longer_than_offered_stops_and_a_missing_package_is_an_error(tmp_path, plant, server):
    config = make_station(tmp_path, plant, server)
    installer, _, replies = runners(config)
    good = plant["packages"]["good"]
    install(installer, offer(good, server, size=good.size - 1))
    assert replies[-1]["state"] == "error" and f"the server has {good.size} bytes" in replies[-1]["reason"]
    install(installer, offer(good, server, url=server.url + "missing.tar"))
    assert replies[-1]["state"] == "error" and replies[-1]["reason"].endswith("missing.tar: HTTP 404 File not found")
    unchanged(config)
    with serve_files(plant["files"], send_length=False) as streaming:  # no Content-Length: the station stops itself
        config = config.model_copy(update={"fleet": config.fleet.model_copy(update={"url_prefixes": [streaming.url]})})
        installer, _, replies = runners(config)
        install(installer, offer(good, streaming, size=good.size - 1))
    assert replies[-1]["state"] == "error" and f"longer than the offered {good.size - 1} bytes" in replies[-1]["reason"]
    unchanged(config)


def test_too_little_disk_space_is_an_error_and_nothing_changes(tmp_path, plant, server, monkeypatch):
    config = make_station(tmp_path, plant, server)
    installer, _, replies = runners(config)
    monkeypatch.setattr(remote_install.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
    install(installer, offer(plant["packages"]["good"], server))
    assert replies[-1]["state"] == "error" and "0 MB free" in replies[-1]["reason"] and not server.requests
    unchanged(config)


def test_a_second_offer_or_a_rollback_while_an_install_runs_is_rejected(tmp_path, plant, server, monkeypatch):
    config = make_station(tmp_path, plant, server)
    installer, rollback, replies = runners(config)
    release = threading.Event()

    def stuck(*args, **kwargs):
        release.wait(30)
        raise remote_install.DownloadError("gave up")

    monkeypatch.setattr(remote_install, "download", stuck)
    installer.on_message(offer(plant["packages"]["good"], server))
    installer.on_message(offer(plant["packages"]["good"], server, id="o2"))
    rollback.on_message(sign_command({"id": "b1", "from_version": "1"}, KEY))
    release.set()
    installer.join(30)
    rejected = [(r["id"], r["reason"]) for r in replies if r["state"] == "rejected"]
    assert rejected[0] == ("o2", "busy: install o1 is running; offer again later")
    assert rejected[1] == ("b1", "busy: install o1 is running; send it again later")
    assert [r["state"] for r in replies if r["id"] == "o1"] == ["downloading", "error"]
    installer.on_message(offer(plant["packages"]["good"], server, id="o3", url=server.url + "x"))
    installer.join(30)
    assert replies[-1]["id"] == "o3" and replies[-1]["state"] == "error", "the slot is free again"


def test_rollback_needs_the_active_version_and_something_to_go_back_to(tmp_path, plant, server):
    config = make_station(tmp_path, plant, server)
    _, rollback, replies = runners(config)
    rollback.on_message(sign_command({"id": "b1", "from_version": "3"}, KEY))
    assert replies[-1]["reason"] == "from_version: v3 is not the active version (v1 is); nothing changed"
    rollback.on_message(sign_command({"id": "b2", "from_version": "1"}, KEY))
    assert replies[-1]["state"] == "rejected" and "v1 has no earlier version to roll back to" in replies[-1]["reason"]
    rollback.on_message(sign_command({"id": "b3", "from_version": "1"}, b"x" * 32))  # another key: one reply a minute
    assert rollback.rejected == 3 and rollback.accepted == 0
    unchanged(config)


def test_url_prefixes_match_whole_hosts_and_refuse_dot_segments():
    prefixes = ["https://files.plant/bundles/"]
    assert url_allowed("https://files.plant/bundles/tiny-2.tar", prefixes)
    for url in (
        "https://files.plant.evil/bundles/tiny-2.tar",
        "https://files.plant/bundles/../secrets/tiny-2.tar",
        "https://files.plant/bundles/%2E%2E/x.tar",
        "http://files.plant/bundles/tiny-2.tar",
    ):
        assert not url_allowed(url, prefixes), url


@pytest.mark.parametrize(
    ("fleet", "security", "message"),
    [
        ({"url_prefixes": ["http://f/"]}, {}, "fleet.accept_installs needs security.trusted_keys"),
        ({}, {"trusted_keys": ["k.pub"]}, "fleet.accept_installs needs fleet.url_prefixes"),
        ({"url_prefixes": ["http://files"]}, {"trusted_keys": ["k.pub"]}, "must end its host with a slash"),
    ],
)
def test_installs_need_trusted_keys_and_file_servers(fleet, security, message):
    from pydantic import ValidationError

    config = {
        "station": "s1",
        "camera": {"source": "x"},
        "model": {"path": "m"},
        "mqtt": {"username": "station"},
        "commands": {"secret_env": "K"},
        "security": security,
        "fleet": {"accept_installs": True, **fleet},
    }
    with pytest.raises(ValidationError, match=re.escape(message)):
        EdgeAdConfig.model_validate(config)
    without_user = config | {"mqtt": {}, "security": {"trusted_keys": ["k.pub"]}, "fleet": {"accept_installs": True}}
    with pytest.raises(ValidationError, match=re.escape("fleet.accept_installs needs mqtt.username")):
        EdgeAdConfig.model_validate(without_user)
