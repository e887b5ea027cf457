"""``config check``'s preflight: every problem ``run`` would refuse, one line each, nothing created."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_ad.config import load_config
from edge_ad.errors import EdgeAdError
from edge_ad.publish.spool import Spool
from edge_ad.service.preflight import ServiceUser, preflight
from tests.support.tiny_bundle import good_image, write_frames

SOMEONE = ServiceUser("someone", 54321, frozenset({54321}), current=False)  # no file here belongs to it


def check(tmp_path: Path, tiny_models: Path, user: ServiceUser | None = None, **sections: dict) -> list[str]:
    """preflight() of a good station (image folder, tiny bundle) with ``sections`` merged in."""
    config = {
        "station": "line1",
        "camera": {"source": str(write_frames(tmp_path / "frames", [good_image(0)]))},
        "model": {"path": str(tiny_models / "tiny")},
        "service": {"state_dir": str(tmp_path / "state")},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return preflight(load_config(path), user, path)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory (mode 0755) whose parents any user may enter: pytest's tmp root is private (0700)."""
    path = Path(tempfile.mkdtemp(prefix="edge-ad-preflight-"))
    path.chmod(0o755)
    if any(not p.stat().st_mode & 0o001 for p in path.parents):
        pytest.skip(f"{path.parent} is not open to other users")
    yield path
    shutil.rmtree(path)


def test_good_config_has_no_problem_and_creates_nothing(tmp_path, tiny_models):
    assert check(tmp_path, tiny_models, cases={"enabled": False}) == []
    assert not (tmp_path / "state").exists()  # run creates it; the check only proves it could


def test_existing_state_dir_gets_runs_write_probe(tmp_path, tiny_models):
    (tmp_path / "state").mkdir()
    assert check(tmp_path, tiny_models) == []
    assert list((tmp_path / "state").iterdir()) == []  # the probe file is gone
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("")  # run's own message (writable_dir) for a file in the way
    assert check(tmp_path, tiny_models) == [
        f"service.state_dir: cannot write to {tmp_path}/state (File exists); set it to a writable directory"
    ]


def test_every_problem_is_one_line_naming_the_key(tmp_path, tiny_models, monkeypatch):
    monkeypatch.delenv("MQTT_PW", raising=False)
    (tmp_path / "afile").write_text("")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    problems = check(
        tmp_path,
        tiny_models,
        model={"path": str(tmp_path / "models" / "gone")},
        camera={"source": str(tmp_path / "replay")},
        mqtt={"username": "line1", "password_env": "MQTT_PW", "tls": {"ca": str(tmp_path / "ca.pem")}},
        service={"state_dir": str(tmp_path / "afile" / "state")},
        recalibration={"defects_root": str(tmp_path / "afile")},
    )
    assert [p.split(":")[0] for p in problems] == [
        "model.path",
        "camera.source",
        "mqtt.password_env",
        "mqtt.tls",
        "service.state_dir",  # evidence.dir and cases.path lie inside it: not reported again
        "recalibration.defects_root",
    ], problems
    assert problems[0] == (
        f"model.path: {tmp_path}/models/gone: bundle not found; run 'edge-ad export' or fix model.path in the config"
    )
    assert problems[1] == (
        f"camera.source: {tmp_path}/replay does not exist; give a folder of images or a video file "
        "(check the path or mount)"
    )
    assert problems[2] == (
        "mqtt.password_env: environment variable MQTT_PW is not set; "
        "set it where the service starts (systemd: Environment= or EnvironmentFile=)"
    )
    assert problems[3].startswith("mqtt.tls: cannot load the certificates (")
    assert problems[3].endswith("); give PEM files that exist and parse (openssl x509 -in FILE -noout)")
    assert problems[4] == (
        f"service.state_dir: cannot create {tmp_path}/afile/state: {tmp_path}/afile is not a directory; "
        "set service.state_dir to a writable directory"
    )
    assert problems[5] == (
        f"recalibration.defects_root: {tmp_path}/afile is not an existing folder; create it or fix the path"
    )
    assert all("\n" not in p for p in problems)


def test_tls_files_must_exist(tmp_path, tiny_models):
    problems = check(tmp_path, tiny_models, mqtt={"tls": {"ca": str(tmp_path / "ca.pem")}})
    assert problems == [f"mqtt.tls.ca: {tmp_path}/ca.pem not found; give PEM files that exist and parse "
                        "(openssl x509 -in FILE -noout)"]  # fmt: skip


def test_a_damaged_bundle_is_named_by_run_s_message(tmp_path, tiny_models):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models, copy, symlinks=True)
    (copy / "tiny" / "1" / "model.bin").write_bytes(b"")
    (problem,) = check(tmp_path, tiny_models, model={"path": str(copy / "tiny")})
    assert problem.startswith(f"model.path: {copy}/tiny/1/model.bin: size 0 B, manifest says ")


def test_devices_and_streams_are_not_opened(tmp_path, tiny_models):
    for source in ("/dev/video77", "rtsp://192.0.2.1/stream", 3):
        assert check(tmp_path, tiny_models, camera={"source": source}) == []


def test_service_user_lookup():
    me = ServiceUser.lookup()
    assert me.current and me.uid == os.geteuid()
    assert ServiceUser.lookup(me.name) == me
    with pytest.raises(EdgeAdError, match="--user no-such-user-edge-ad: no such user"):
        ServiceUser.lookup("no-such-user-edge-ad")


def test_permission_bits_decide_for_another_user(open_dir):
    folder = open_dir / "state"
    folder.mkdir(mode=0o755)
    assert SOMEONE.denies(folder, os.R_OK | os.X_OK) is None  # 'other' may read and enter
    assert SOMEONE.denies(folder, os.W_OK | os.X_OK) == folder
    folder.chmod(0o775)
    member = ServiceUser("member", 54321, frozenset({54321, folder.stat().st_gid}), current=False)
    assert member.denies(folder, os.W_OK | os.X_OK) is None  # the group bits
    inner = folder / "inner"
    inner.mkdir(mode=0o777)
    folder.chmod(0o750)
    assert SOMEONE.denies(inner, os.W_OK) == folder  # every parent must let the user in
    assert ServiceUser("root", 0, frozenset({0}), current=False).denies(inner, os.W_OK) is None


def test_directories_are_checked_for_the_service_user(tmp_path, tiny_models, open_dir):
    (open_dir / "state").mkdir(mode=0o755)
    problems = check(tmp_path, tiny_models, SOMEONE, service={"state_dir": str(open_dir / "state")})
    assert (
        f"service.state_dir: user someone cannot write to {open_dir}/state (permissions of {open_dir}/state); "
        "give someone write access (chown/chmod) or set service.state_dir to a writable directory"
    ) in problems
    missing = open_dir / "new" / "state"
    problems = check(tmp_path, tiny_models, SOMEONE, service={"state_dir": str(missing)})
    assert (
        f"service.state_dir: user someone cannot create {missing} (permissions of {open_dir}); "
        "give someone write access (chown/chmod) or set service.state_dir to a writable directory"
    ) in problems
    # pytest's private tmp root (and the bundle's 0700 version directory) keep 'someone' out: one line each
    assert f"model.path: user someone cannot read {tiny_models}/tiny/1/manifest.json" in "\n".join(problems)
    assert f"camera.source: user someone cannot read {tmp_path}/frames" in "\n".join(problems)
    open_dir.chmod(0o777)
    problems = check(tmp_path, tiny_models, SOMEONE, service={"state_dir": str(missing)})
    assert not any(p.startswith("service.state_dir") for p in problems), problems
    assert not missing.parent.exists()  # nothing created


def test_the_command_key_is_checked_when_commands_are_on(tmp_path, tiny_models):
    (tmp_path / "short.key").write_text("too short\n")
    commands_on = {"recalibration": {"mqtt_command": True}, "mqtt": {"username": "station"}}
    problems = check(tmp_path, tiny_models, **commands_on, commands={"secret_file": str(tmp_path / "short.key")})
    assert problems == [
        "commands.secret: the key has 9 characters, needs at least 32 (generate one with: openssl rand -hex 32)"
    ]
    (tmp_path / "good.key").write_text("k" * 64)
    assert check(tmp_path, tiny_models, **commands_on, commands={"secret_file": str(tmp_path / "good.key")}) == []


def test_what_an_earlier_run_left_in_the_state_directory(tmp_path, tiny_models, open_dir):
    """Found by the probe: a corrupt spool, a spool and compile cache left by a run as root, and images only root
    could read all passed 'config check' and then stopped (or silently idled) 'run'."""
    state = open_dir / "state"
    state.mkdir()
    state.chmod(0o777)
    (state / "spool.sqlite").write_bytes(b"\x13" * 20_000)
    assert check(tmp_path, tiny_models, service={"state_dir": str(state)}) == [
        f"service.state_dir: {state}/spool.sqlite is not a spool database (file is not a database); move it aside "
        "(its unsent verdicts are lost) and start again"
    ]
    (state / "spool.sqlite").unlink()
    Spool(state / "spool.sqlite").close()  # a run as root made it (mode 0644) ...
    (state / "ov_cache").mkdir(mode=0o755)  # ... and this
    problems = check(tmp_path, tiny_models, SOMEONE, service={"state_dir": str(state)})
    assert f"service.state_dir: user someone cannot write {state}/spool.sqlite (permissions of " in "\n".join(problems)
    for leftover in state.glob("spool.sqlite*"):
        leftover.unlink()
    problems = check(tmp_path, tiny_models, SOMEONE, service={"state_dir": str(state)})
    assert (
        f"service.state_dir: user someone cannot write {state}/ov_cache (permissions of {state}/ov_cache; left by a "
        f"run as another user?); chown -R someone {state}"
    ) in problems
    frames = open_dir / "frames"
    shutil.copytree(tmp_path / "frames", frames)
    frames.chmod(0o755)
    for image in frames.iterdir():
        image.chmod(0o600)
    problems = check(tmp_path, tiny_models, SOMEONE, camera={"source": str(frames)}, service={"state_dir": str(state)})
    assert any(p.startswith(f"camera.source: user someone cannot read {frames}/") for p in problems), problems


def test_sparkplug_needs_protobuf(tmp_path, tiny_models, monkeypatch):
    import edge_ad.publish.sparkplug as package

    assert check(tmp_path, tiny_models, sparkplug={"enabled": True}) == []
    monkeypatch.delattr(package, "sparkplug_b_pb2", raising=False)  # as if protobuf were not installed
    monkeypatch.setitem(sys.modules, "edge_ad.publish.sparkplug.sparkplug_b_pb2", None)
    (problem,) = check(tmp_path, tiny_models, sparkplug={"enabled": True})
    assert problem.startswith("sparkplug.enabled needs protobuf >= 6.31.1")
    assert problem.endswith("install it with: pip install 'edge_ad[sparkplug]'")


def test_opcua_needs_asyncua_its_passwords_and_its_certificate(tmp_path, tiny_models, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "plc.pw").write_text("secret\n")
    users = [{"name": "plc", "password_file": str(tmp_path / "plc.pw")}]
    assert check(tmp_path, tiny_models, opcua={"enabled": True, "users": users}) == []
    missing = [{"name": "plc", "password_file": str(tmp_path / "missing.pw")}]
    (problem,) = check(tmp_path, tiny_models, opcua={"enabled": True, "users": missing})
    assert problem.startswith("opcua.users[0].password_file: cannot read") and "missing.pw" in problem
    (tmp_path / "cert.der").write_bytes(b"not a certificate")
    (problem,) = check(tmp_path, tiny_models, opcua={"enabled": True, "users": users, "certificate":
                       str(tmp_path / "cert.der"), "private_key": str(tmp_path / "key.pem")})  # fmt: skip
    assert problem.startswith("opcua.certificate: cannot load")
    monkeypatch.setitem(sys.modules, "asyncua", None)  # as if asyncua were not installed
    (problem,) = check(tmp_path, tiny_models, opcua={"enabled": True, "users": users})
    assert problem.startswith("opcua.enabled needs asyncua >= 2.1") and problem.endswith("'edge_ad[opcua]'")
