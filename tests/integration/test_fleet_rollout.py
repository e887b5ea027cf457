"""``edge-ad fleet rollout`` on a real mosquitto with simulated stations (tests/support/fleet_stations.py).

The stations are paho clients acting like daemons on the MQTT contract: they verify every command's HMAC
with the station's own verifier, download the package from a local HTTP server, check its manifest hash
and publish payloads validated against the message models. The last test runs three real daemons.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from edge_ad.bundle.package import pack, read_package
from edge_ad.cli import main
from edge_ad.fleet.rollout_plan import Rollout
from tests.support.broker import Recorder, start_mosquitto
from tests.support.files import serve_files
from tests.support.fleet_stations import SimStation
from tests.support.station import edge_ad, start_daemon, station_config
from tests.support.tiny_bundle import good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration
KEY = "3c9a1f0e7d2b4a6c8e0f1a3b5c7d9e1f"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The package of tiny v2 (the stations run v1)."""
    store = tmp_path_factory.mktemp("workstation")
    for _ in range(2):
        make_tiny_bundle(store)
    return pack(store / "tiny" / "2", tmp_path_factory.mktemp("files")).path


@contextmanager
def plant(mosquitto, behaviours: dict[str, str], **kwargs):
    """Simulated stations named by ``behaviours`` under a prefix of their own (the broker is shared)."""
    prefix = f"plant-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        stations = {
            name: stack.enter_context(SimStation(mosquitto, name, KEY.encode(), prefix, behaviour=b, **kwargs))
            for name, b in behaviours.items()
        }
        time.sleep(0.5)  # a first stats message each: the baseline NG rate
        yield prefix, stations
        for station in stations.values():
            station.clear()


def rollout_args(mosquitto, prefix, tmp_path, *extra) -> list[str]:
    key = tmp_path / "command.key"
    key.write_text(KEY + "\n")
    broker = f"{mosquitto.host}:{mosquitto.port}"
    return ["fleet", "rollout", *extra, "--broker", broker, "--prefix", prefix, "--key", str(key),
            "--state-dir", str(tmp_path / "rollouts")]  # fmt: skip


def start(mosquitto, prefix, tmp_path, package, url, *extra) -> list[str]:
    return rollout_args(mosquitto, prefix, tmp_path, str(package), "--base-url", url, "--stations", "s*", *extra)


def state_file(tmp_path) -> Rollout:
    (path,) = (tmp_path / "rollouts").glob("rollout-*.json")
    return Rollout.load(path)


def states(rollout: Rollout) -> dict[str, str]:
    return {r.station: r.state for r in rollout.stations}


def test_a_good_bundle_reaches_every_station_canary_first_then_batches(mosquitto, package, tmp_path, capsys):
    three = dict.fromkeys(["s1", "s2", "s3"], "ok")
    with serve_files(package.parent) as files, plant(mosquitto, three) as (prefix, stations):
        args = start(mosquitto, prefix, tmp_path, package, files.url, "--canary", "1", "--soak", "2s", "--batch", "1")
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert {s.name: s.active for s in stations.values()} == {"s1": "2", "s2": "2", "s3": "2"}
        assert all(s.commands() == ["install"] for s in stations.values())
        rollout = state_file(tmp_path)
        assert rollout.state == "completed" and set(states(rollout).values()) == {"passed"}
        canary = rollout.record("s1")
        assert canary.role == "canary" and canary.soak_samples >= 3 and canary.max_ng_rate == pytest.approx(0.01)
        assert canary.ng_bound == 0.05 and canary.baseline_ng_rate == pytest.approx(0.01)
        assert canary.replies == ["downloading", "verifying", "commissioning", "installed"]
        assert rollout.record("s2").soak_samples == 0  # the rest is not soaked without --soak-all
        offered = [s.received[0][2] for s in (stations["s1"], stations["s2"], stations["s3"])]
        assert offered == sorted(offered)  # canary, then batch 1, then batch 2
        assert offered[1] - offered[0] > 2  # after the soak
        assert "all stations passed" in out and "v1 -> v2" in out and str(rollout.path) in out
        assert KEY not in out + err

        code = main(rollout_args(mosquitto, prefix, tmp_path, "--abort", str(rollout.path)))
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert {s.name: s.active for s in stations.values()} == {"s1": "1", "s2": "1", "s3": "1"}
        rollout = Rollout.load(rollout.path)
        assert rollout.state == "aborted" and set(states(rollout).values()) == {"rolled_back"}
        assert all(s.replies[-1]["state"] == "rolled_back" for s in stations.values())


def test_a_canary_failing_acceptance_stops_the_rollout_before_anyone_else_is_touched(
    mosquitto, package, tmp_path, capsys
):
    behaviours = {"s1": "fail_acceptance", "s2": "ok", "s3": "ok"}
    with serve_files(package.parent) as files, plant(mosquitto, behaviours) as (prefix, stations):
        code = main(start(mosquitto, prefix, tmp_path, package, files.url, "--soak", "2s"))
        out, err = capsys.readouterr()
        assert code == 1, out + err
        assert stations["s2"].received == [] and stations["s3"].received == []  # no command at all
        assert stations["s1"].active == "1" and stations["s1"].commands() == ["install"]  # it refused: nothing to undo
        rollout = state_file(tmp_path)
        assert rollout.state == "stopped" and states(rollout) == {"s1": "failed", "s2": "pending", "s3": "pending"}
        assert rollout.record("s1").acceptance is False and rollout.record("s1").reason.startswith("install failed")
        assert "STOPPED: canaries: s1: install failed: acceptance" in out and out.count("never touched") == 2


def test_a_failure_in_a_batch_rolls_back_that_batch_and_leaves_later_ones_alone(mosquitto, package, tmp_path, capsys):
    behaviours = {"s1": "ok", "s2": "ok", "s3": "download_error", "s4": "ok"}
    with serve_files(package.parent) as files, plant(mosquitto, behaviours) as (prefix, stations):
        code = main(start(mosquitto, prefix, tmp_path, package, files.url, "--soak", "1s", "--batch", "2"))
        out, err = capsys.readouterr()
        assert code == 1, out + err
        rollout = state_file(tmp_path)
        assert states(rollout) == {"s1": "passed", "s2": "rolled_back", "s3": "failed", "s4": "pending"}
        assert {s.name: s.active for s in stations.values()} == {"s1": "2", "s2": "1", "s3": "1", "s4": "1"}
        assert stations["s2"].commands() == ["install", "rollback"]
        assert stations["s2"].received[1][1]["from_version"] == "2"
        assert stations["s4"].received == [] and stations["s3"].commands() == ["install"]
        assert rollout.record("s2").reason.startswith("rolled back with its stage (s3: install error: download")
        assert "STOPPED: batch 1: s3: install error" in out


def test_a_canary_whose_ng_rate_rises_during_the_soak_is_rolled_back(mosquitto, package, tmp_path, capsys):
    behaviours = {"s1": "ng_after_install", "s2": "ok"}
    with serve_files(package.parent) as files, plant(mosquitto, behaviours) as (prefix, stations):
        code = main(start(mosquitto, prefix, tmp_path, package, files.url, "--soak", "5s"))
        out, err = capsys.readouterr()
        assert code == 1, out + err
        rollout = state_file(tmp_path)
        canary = rollout.record("s1")
        assert canary.state == "rolled_back" and canary.rollback == "v1 active again (left v2)"
        assert canary.reason == "NG rate 0.300 above the bound 0.050 during the soak"
        assert stations["s1"].active == "1" and stations["s2"].received == []


def test_an_interrupted_rollout_resumes_where_it_stopped(mosquitto, package, tmp_path, capsys):
    three = dict.fromkeys(["s1", "s2", "s3"], "ok")
    with serve_files(package.parent) as files, plant(mosquitto, three) as (prefix, stations):
        args = start(mosquitto, prefix, tmp_path, package, files.url, "--soak", "60s")
        proc = subprocess.Popen([sys.executable, "-m", "edge_ad.cli", *args], stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                files = list((tmp_path / "rollouts").glob("rollout-*.json"))
                if files and Rollout.load(files[0]).record("s1").state == "soaking":
                    break
                time.sleep(0.2)
            else:
                pytest.fail("the canary never started soaking")
        finally:
            proc.send_signal(signal.SIGKILL)  # a lost laptop, not a clean stop
            proc.communicate(timeout=10)
        path = state_file(tmp_path).path
        code = main(rollout_args(mosquitto, prefix, tmp_path, "--resume", str(path), "--soak", "1s"))
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert stations["s1"].commands() == ["install"]  # still on the new version: soaked again, not re-offered
        assert {s.name: s.active for s in stations.values()} == {"s1": "2", "s2": "2", "s3": "2"}
        rollout = Rollout.load(path)
        assert rollout.state == "completed" and rollout.options.soak_s == 1.0


def test_stations_without_a_key_are_refused_before_anything_is_sent(mosquitto, package, tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "s1.key").write_text(KEY + "\n")
    with serve_files(package.parent) as files, plant(mosquitto, {"s1": "ok", "s2": "ok"}) as (prefix, stations):
        args = start(mosquitto, prefix, tmp_path, package, files.url)
        args[args.index("--key") : args.index("--key") + 2] = ["--keys", str(keys)]
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 2 and "no command key for s2 (no s2.key in" in err and "nothing was sent" in err
        assert stations["s1"].received == [] and stations["s2"].received == []
        assert KEY not in out + err


def _real_plant(tmp_path: Path, broker_port: int, server_url: str, public: Path, names: list[str]) -> dict[str, Path]:
    """A station config per name, each on tiny v1 with its own models, state and command key."""
    configs = {}
    frames = write_frames(tmp_path / "frames", [good_image(s) for s in range(900, 904)])
    (tmp_path / "secret.txt").write_text("s3cret\n")
    (tmp_path / "keys").mkdir()
    for i, name in enumerate(names):
        home = tmp_path / name
        models = home / "models" / "tiny"
        models.mkdir(parents=True)
        shutil.copytree(tmp_path / "workstation" / "tiny" / "1", models / "1")
        (models / "active").symlink_to("1")
        key = tmp_path / "keys" / f"{name}.key"
        key.write_text(f"{i}{KEY[1:]}\n")  # every station its own key
        configs[name] = station_config(
            home, str(frames), models, broker_port,
            station=name,
            camera={"fps": 20, "loop": True},
            model={"variant": "fp32"},
            service={"stats_interval_s": 1},
            mqtt={"username": "station", "password_file": str(tmp_path / "secret.txt"), "client_id": f"edge-ad-{name}"},
            commands={"secret_file": str(key)},
            security={"trusted_keys": [str(public)]},
            fleet={"accept_installs": True, "url_prefixes": [server_url]},
        )  # fmt: skip
    return configs


def _refuse_on_this_hardware(state_dir: Path, version: Path) -> None:
    """Make the station's commissioning of ``version`` refuse even FP32, as on a device that computes differently.

    The station reuses a valid commissioning record of a version instead of measuring again: this one says
    FP32 did not reproduce the export here, so the station's acceptance of that version fails.
    """
    from edge_ad.bundle.store import load_bundle
    from edge_ad.commissioning.measure import commission
    from edge_ad.commissioning.record import write_record

    record = commission(load_bundle(version), "CPU", context="test")
    fp32 = record.candidates["fp32"].model_copy(update={"accepted": False, "reasons": ["agreement 80.0% < 100.0%"]})
    why = "FP32 itself does not reproduce the export on this device"
    candidates = record.candidates | {"fp32": fp32}
    refused = record.model_copy(update={"chosen": None, "candidates": candidates, "reason": why})
    write_record(state_dir, refused)


def test_three_real_stations_a_failing_canary_then_a_good_rollout(tmp_path):
    """Issue 25 #5: one canary fails its acceptance -> it keeps v1 and the others are never touched; with a
    good canary the bundle reaches all three stations (real daemons, an authenticating broker, a file server)."""
    from edge_ad.bundle.signing import load_private_key, new_key_pair

    passwd = tmp_path / "passwd"
    for user in ("station", "operator"):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if user == "station" else []), str(passwd), user,
                        "s3cret"], check=True)  # fmt: skip
    passwd.chmod(0o644)
    private, public = new_key_pair(tmp_path / "signing", "workstation")
    for _ in range(2):
        make_tiny_bundle(tmp_path / "workstation", sign=load_private_key(private, "test"))
    files = tmp_path / "files"
    package = pack(tmp_path / "workstation" / "tiny" / "2", files).path
    names = ["e1", "e2", "e3"]
    (tmp_path / "broker").mkdir()
    with (
        start_mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\n") as broker,
        serve_files(files) as server,
    ):
        configs = _real_plant(tmp_path, broker.port, server.url, public, names)
        _refuse_on_this_hardware(tmp_path / "e1" / "state", tmp_path / "workstation" / "tiny" / "2")
        procs = [start_daemon(configs[name]) for name in names]
        try:
            with Recorder(broker, setup=lambda c: c.username_pw_set("operator", "s3cret")) as rec:

                def running(version: str, *stations: str):
                    def check(r) -> bool:
                        last = {}
                        for topic, payload, _ in list(r.messages):
                            if topic.endswith("/status"):
                                last[payload.get("station")] = payload
                        return all((last.get(s) or {}).get("model", {}).get("version") == version
                                   and last[s].get("state") == "online" for s in stations)  # fmt: skip

                    return check

                assert rec.wait_for(running("1", *names), timeout=60), "the stations did not come online"
                (tmp_path / "operator.pw").write_text("s3cret\n")
                common = ["--broker", f"127.0.0.1:{broker.port}", "--username", "operator", "--password-file",
                          str(tmp_path / "operator.pw"), "--keys", str(tmp_path / "keys"), "--state-dir",
                          str(tmp_path / "rollouts"), "--soak", "3s", "--base-url", server.url]  # fmt: skip
                failed = edge_ad("fleet", "rollout", str(package), "--stations", "e*", "--canaries", "e1", *common)
                assert failed.returncode == 1, failed.stdout + failed.stderr
                assert "STOPPED: canaries: e1: install failed" in failed.stdout, failed.stdout
                installs = [t for t, _, _ in rec.messages if t.endswith("/cmd/install/result")]
                assert installs and all(t.startswith("edge_ad/e1/") for t in installs)  # the others: never touched
                assert running("1", *names)(rec)

                records = tmp_path / "e1" / "state" / "commissioning"
                for refusal in records.glob(f"{read_package(package).manifest_sha256}-*"):
                    refusal.unlink()  # e1 fixed: it measures v2 itself now
                good = edge_ad("fleet", "rollout", str(package), "--stations", "e*", "--canaries", "e2", *common)
                assert good.returncode == 0, good.stdout + good.stderr
                assert "all stations passed" in good.stdout
                assert rec.wait_for(running("2", *names), timeout=30), "not all stations run v2"
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            stderrs = [proc.communicate(timeout=30)[1] for proc in procs]
    assert all("Traceback" not in err for err in stderrs), stderrs


def test_a_canary_that_never_answers_is_rolled_back_in_case_it_installs_later(mosquitto, package, tmp_path, capsys):
    behaviours = {"s1": "silent", "s2": "ok"}
    with serve_files(package.parent) as files, plant(mosquitto, behaviours) as (prefix, stations):
        args = start(mosquitto, prefix, tmp_path, package, files.url, "--soak", "1s", "--install-timeout", "2s")
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 1, out + err
        assert stations["s1"].commands() == ["install", "rollback"] and stations["s2"].received == []
        rollback = stations["s1"].received[1][1]
        assert rollback["from_version"] == "2"  # the offered version: a signed version keeps its number
        canary = state_file(tmp_path).record("s1")
        assert canary.state == "failed" and "no final install reply within 2 s" in canary.reason
        assert canary.rollback.startswith("not on v2: nothing to roll back")
