"""The real daemon (tiny bundle, private mosquitto) with OPC UA on, read and called by a real asyncua client."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

pytest.importorskip("asyncua")

from asyncua import ua

from edge_ad.opcua import nodes
from edge_ad.opcua.auth import hash_password
from edge_ad.opcua.certs import application_uri_of, load_certificate
from edge_ad.publish import load_schema
from tests.support.broker import Recorder
from tests.support.net import free_port
from tests.support.opcua import call_with_reason, client_certificate, session, station_node
from tests.support.station import start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image, write_frames

pytestmark = pytest.mark.integration

PLC_PASSWORD = "plc password from a file"
SCADA_PASSWORD = "scada password kept only as a hash"


def opcua_section(folder: Path, port: int) -> dict:
    (folder / "plc.pw").write_text(PLC_PASSWORD + "\n")
    return {
        "enabled": True,
        "endpoint": f"opc.tcp://127.0.0.1:{port}/edge_ad/",
        "security_policies": ["None", "Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"],
        "users": [
            {"name": "plc", "password_file": str(folder / "plc.pw")},
            {"name": "scada", "password_hash": hash_password(SCADA_PASSWORD)},
        ],
    }


def frames(folder: Path) -> Path:
    return write_frames(folder, [good_image(100), good_image(101), good_image(102), defect_image(7)])


class Station:
    """A running daemon with OPC UA; ``stop()`` sends SIGTERM and returns stderr."""

    def __init__(self, name: str, config: Path, url: str, folder: Path) -> None:
        self.name, self.config, self.url, self.folder = name, config, url, folder
        self.proc = start_daemon(config)
        self.stderr = ""

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        return self.stderr


def start_station(folder: Path, tiny_models: Path, mqtt_port: int, name: str, **sections) -> Station:
    port = free_port()
    sections = {"station": name, "opcua": opcua_section(folder, port), **sections}
    config = station_config(folder, str(frames(folder / "frames")), tiny_models / "tiny", mqtt_port, **sections)
    return Station(name, config, f"opc.tcp://127.0.0.1:{port}/edge_ad/", folder)


@pytest.fixture(scope="module")
def free_run(tmp_path_factory, tiny_models, mosquitto) -> Iterator[tuple[Station, Recorder]]:
    folder = tmp_path_factory.mktemp("opcua-free-run")
    name = f"opcua-free-{time.monotonic_ns()}"
    with Recorder(mosquitto, topic=f"edge_ad/{name}/#") as rec:
        station = start_station(folder, tiny_models, mosquitto.port, name,
                                camera={"fps": 20, "loop": True}, service={"stats_interval_s": 0.5})  # fmt: skip
        try:
            yield station, rec
        finally:
            stderr = station.stop()
    assert station.proc.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def triggered(tmp_path_factory, tiny_models, mosquitto) -> Iterator[tuple[Station, Recorder]]:
    folder = tmp_path_factory.mktemp("opcua-triggered")
    name = f"opcua-trig-{time.monotonic_ns()}"
    with Recorder(mosquitto, topic=f"edge_ad/{name}/#") as rec:
        station = start_station(folder, tiny_models, mosquitto.port, name,
                                camera={"fps": 50, "loop": True},
                                service={"mode": "triggered", "stats_interval_s": 0.5})  # fmt: skip
        try:
            yield station, rec
        finally:
            stderr = station.stop()
    assert station.proc.returncode == 0, stderr
    assert "Traceback" not in stderr


class Changes:
    """asyncua subscription handler: every data change as (node id string, value)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def datachange_notification(self, node, value, data) -> None:
        self.seen.append((node.nodeid.Identifier, value))


def test_browse_read_and_subscribe_to_the_station(free_run):
    station, rec = free_run

    async def look():
        async with session(station.url, "plc", PLC_PASSWORD) as client:
            ns, obj = await station_node(client, station.name)
            browsed = {(await child.read_browse_name()).Name for child in await obj.get_children()}
            model = client.get_node(f"ns={ns};s=Station.Model")
            browsed |= {f"Model.{(await c.read_browse_name()).Name}" for c in await model.get_children()}
            counters = client.get_node(f"ns={ns};s=Station.Counters")
            browsed |= {f"Counters.{(await c.read_browse_name()).Name}" for c in await counters.get_children()}
            node = {name: client.get_node(f"ns={ns};s=Station.{name}") for name in ("Seq", "LastVerdict", "NG")}
            changes = Changes()
            subscription = await client.create_subscription(50, changes)
            await subscription.subscribe_data_change(list(node.values()))
            await asyncio.sleep(3)
            await subscription.delete()
            snapshots = []  # one Read request each: a consistent view of the latest verdict
            for _ in range(10):
                snapshots.append(await client.read_values([node["Seq"], node["LastVerdict"], node["NG"]]))
                await asyncio.sleep(0.1)
            read = {}
            for var in nodes.VARIABLES:
                read[var.name] = await client.get_node(f"ns={ns};s=Station.{var.name}").read_value()
            return ns, browsed, changes.seen, read, snapshots

    ns, browsed, seen, read, snapshots = asyncio.run(look())
    assert ns == 2
    assert {v.name for v in nodes.VARIABLES} | {"Trigger", "Model", "Counters"} <= browsed
    seqs = [value for ident, value in seen if ident == "Station.Seq"]
    assert len(seqs) >= 10 and seqs == sorted(seqs), "Seq must change with the verdicts, in order"
    verdicts = [value for ident, value in seen if ident == "Station.LastVerdict"]
    assert set(verdicts) == {"OK", "NG"}, "the looping folder has a defect: both verdicts must show"
    assert read["Model.Name"] == "tiny" and read["Model.Variant"] and read["State"] == "online"
    assert read["Threshold"] > 0 and 0 <= read["ScoreNorm"] <= 1 and read["LatencyMs"] > 0
    assert read["Counters.OK"] + read["Counters.NG"] == read["Counters.Frames"] >= read["Seq"] > 0
    assert read["Alarm"] == "" and read["TriggerId"] == ""
    # the same verdicts as on MQTT, seq for seq
    assert rec.wait_for(lambda r: len(r.on("verdict")) >= max(seq for seq, _, _ in snapshots))
    mqtt = {v["seq"]: v["verdict"] for v in rec.on("verdict")}
    assert all(mqtt[seq] == verdict and ng == (verdict == "NG") for seq, verdict, ng in snapshots)
    assert rec.wait_for(lambda r: r.on("stats") and r.on("stats")[-1].get("opcua", {}).get("listening"))
    jsonschema.validate(rec.on("stats")[-1], load_schema("stats"))


def test_anonymous_and_wrong_credentials_are_refused(free_run):
    station, _ = free_run

    async def attempt(user, password):
        async with session(station.url, user, password):
            pass

    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):  # anonymous is not even offered
        asyncio.run(attempt(None, None))
    for user, password in [("plc", "wrong"), ("scada", PLC_PASSWORD), ("nobody", PLC_PASSWORD), ("plc", "")]:
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            asyncio.run(attempt(user, password))
    asyncio.run(attempt("scada", SCADA_PASSWORD))  # the hashed one works


def test_basic256sha256_with_the_certificate_made_on_first_start(free_run, tmp_path):
    station, _ = free_run
    folder = station.folder / "state" / "opcua"
    assert (folder / "server_key.pem").stat().st_mode & 0o777 == 0o600
    assert application_uri_of(load_certificate(folder / "server_cert.der")) == f"urn:edge_ad:{station.name}:server"
    certificate = client_certificate(tmp_path)

    async def secure(mode):
        async with session(station.url, "scada", SCADA_PASSWORD, f"Basic256Sha256,{mode}", certificate) as client:
            ns, _ = await station_node(client, station.name)
            assert client.security_policy.Mode == getattr(ua.MessageSecurityMode, mode)
            return await client.get_node(f"ns={ns};s=Station.Model.Name").read_value()

    assert asyncio.run(secure("SignAndEncrypt")) == "tiny"
    assert asyncio.run(secure("Sign")) == "tiny"


def test_trigger_on_a_free_run_station_is_refused_with_the_reason(free_run):
    """The Bad code, and the reason both in the call's own diagnostics (when asked) and in LastTriggerError."""
    station, _ = free_run
    reason = "BadInvalidState: P-1: the station runs in free_run mode; Trigger needs service.mode: triggered"

    async def call():
        async with session(station.url, "plc", PLC_PASSWORD) as client:
            ns, obj = await station_node(client, station.name)
            with pytest.raises(ua.uaerrors.BadInvalidState):
                await obj.call_method(f"{ns}:Trigger", "P-1")  # no diagnostics asked: none sent
            answered = await call_with_reason(client, ns, "Trigger", "P-1")
            await asyncio.sleep(0.3)
            return answered, await client.get_node(f"ns={ns};s=Station.LastTriggerError").read_value()

    (status, outputs, said), last = asyncio.run(call())
    assert (status.name, outputs, said) == ("BadInvalidState", [], reason)
    assert last == reason


def test_100_triggers_answered_in_the_same_call_in_order(triggered):
    """Each Trigger(id) returns the verdict for the first frame after it; the MQTT verdict is the same one."""
    station, rec = triggered
    ids = [f"P-{i:03d}" for i in range(100)]

    async def calls():
        async with session(station.url, "plc", PLC_PASSWORD) as client:
            ns, obj = await station_node(client, station.name)
            answers = []
            for part in ids:
                answers.append(await obj.call_method(f"{ns}:Trigger", part))
            return answers

    answers = asyncio.run(calls())
    assert [a[0] for a in answers] == ids, "every answer echoes its id, in order"
    seqs = [a[6] for a in answers]
    assert seqs == sorted(seqs) and len(set(seqs)) == 100
    names = [name for name, _, _ in nodes.OUTPUTS]
    for answer in answers:
        out = dict(zip(names, answer, strict=True))
        assert out["Verdict"] in ("OK", "NG") and out["NG"] == (out["Verdict"] == "NG")
        assert out["NG"] == (out["Score"] >= out["Threshold"]) and (out["ScoreNorm"] >= 0.5) == out["NG"]
        assert out["LatencyMs"] > 0 and abs(out["CaptureTime"].timestamp() - time.time()) < 120
    # the binding is MQTT's: the verdict published for that id carries the same seq, score and verdict
    assert rec.wait_for(lambda r: len(r.on("verdict")) >= 100, timeout=20)
    published = {v["seq"]: v for v in rec.on("verdict")}
    for answer in answers:
        v = published[answer[6]]
        assert (v["trigger"]["id"], v["verdict"]) == (answer[0], answer[1])
        assert (v["score"], v["score_norm"], v["threshold"]) == (answer[3], answer[4], answer[5])  # the same numbers
    assert rec.wait_for(lambda r: (r.on("stats")[-1].get("opcua") or {}).get("answered", 0) >= 100)
    stats = rec.on("stats")[-1]
    assert stats["triggers"]["accepted"] >= 100 and stats["triggers"]["expired"] == 0


def test_an_invalid_id_is_refused_and_counted_like_a_bad_mqtt_trigger(triggered):
    station, rec = triggered

    async def call():
        async with session(station.url, "plc", PLC_PASSWORD) as client:
            ns, obj = await station_node(client, station.name)
            with pytest.raises(ua.uaerrors.BadInvalidArgument):
                await obj.call_method(f"{ns}:Trigger", "x" * 65)
            status, _, reason = await call_with_reason(client, ns, "Trigger", "")
            assert (status.name, reason) == (
                "BadInvalidArgument",
                "BadInvalidArgument: : trigger 'id' must be a string or integer of 1-64 characters",
            )
            status, outputs, reason = await call_with_reason(client, ns, "Trigger", "with-diagnostics")
            assert status.is_good() and outputs[0] == "with-diagnostics" and reason is None
            return await obj.call_method(f"{ns}:Trigger", "after-the-bad-ones")

    before = (rec.on("stats")[-1].get("triggers") or {}).get("rejected", 0) if rec.on("stats") else 0
    assert asyncio.run(call())[0] == "after-the-bad-ones"
    assert rec.wait_for(lambda r: r.on("stats")[-1]["triggers"]["rejected"] == before + 2)


def test_no_frame_in_time_is_bad_timeout(tiny_models, mosquitto, tmp_path):
    """A network camera that stops sending (connection kept open): the call returns BadTimeout, not a late part."""
    from tests.support.mjpeg import serve_mjpeg

    with serve_mjpeg([good_image(s) for s in range(3)], fps=20) as camera:
        port = free_port()
        name = f"opcua-timeout-{time.monotonic_ns()}"
        sections = {
            "station": name,
            "camera": {"open_timeout_s": 5, "stall_timeout_s": 30},
            "service": {"mode": "triggered", "trigger_timeout_s": 1.0},
            "opcua": {**opcua_section(tmp_path, port), "answer_margin_s": 1.0},
        }
        config = station_config(tmp_path, camera.url, tiny_models / "tiny", mosquitto.port, **sections)
        station = Station(name, config, f"opc.tcp://127.0.0.1:{port}/edge_ad/", tmp_path)

        async def calls():
            async with session(station.url, "plc", PLC_PASSWORD) as client:
                ns, obj = await station_node(client, station.name)
                deadline = time.monotonic() + 60
                while True:  # until the camera delivers and the loop serves
                    try:
                        assert (await obj.call_method(f"{ns}:Trigger", "warm-up"))[0] == "warm-up"
                        break
                    except (ua.uaerrors.BadWaitingForInitialData, ua.uaerrors.BadNoCommunication):
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.2)
                camera.hang()
                await asyncio.sleep(0.5)
                started = time.monotonic()
                with pytest.raises(ua.uaerrors.BadTimeout):
                    await obj.call_method(f"{ns}:Trigger", "P-no-frame")
                took = time.monotonic() - started
                camera.resume()
                await asyncio.sleep(0.3)
                error = await client.get_node(f"ns={ns};s=Station.LastTriggerError").read_value()
                return took, error, await obj.call_method(f"{ns}:Trigger", "P-after")

        try:
            took, error, after = asyncio.run(calls())
        finally:
            stderr = station.stop()
    assert station.proc.returncode == 0, stderr
    assert 0.9 < took < 10, took
    assert error.startswith("BadTimeout: P-no-frame:"), error
    assert after[0] == "P-after", "the station answers again once frames come"


def test_an_opc_ua_port_in_use_leaves_mqtt_verdicts_flowing(tiny_models, mosquitto, tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    name = f"opcua-busy-{time.monotonic_ns()}"
    sections = {"station": name, "camera": {"fps": 20, "loop": True}, "service": {"stats_interval_s": 0.5},
                "opcua": opcua_section(tmp_path, port)}  # fmt: skip
    source = str(frames(tmp_path / "frames"))
    config = station_config(tmp_path, source, tiny_models / "tiny", mosquitto.port, **sections)
    try:
        with Recorder(mosquitto, topic=f"edge_ad/{name}/#") as rec:
            station = Station(name, config, f"opc.tcp://127.0.0.1:{port}/edge_ad/", tmp_path)
            try:
                assert rec.wait_for(lambda r: any("opcua" in s for s in r.on("status")), timeout=60), station.proc
                count = len(rec.on("verdict"))
                assert rec.wait_for(lambda r: len(r.on("verdict")) >= count + 20, timeout=30), "verdicts stopped"
                stats = rec.on("stats")[-1]
            finally:
                stderr = station.stop()
    finally:
        blocker.close()
    assert station.proc.returncode == 0, stderr
    alarm = next(s for s in rec.on("status") if "opcua" in s)
    jsonschema.validate(alarm, load_schema("status"))
    assert alarm["state"] == "online" and "cannot serve" in alarm["opcua"]["message"], alarm
    assert stats["opcua"]["listening"] is False
    seqs = [v["seq"] for v in rec.on("verdict")]
    assert seqs == list(range(1, len(seqs) + 1)), "gap-free while OPC UA failed"
    assert "Traceback" not in stderr


def test_a_broker_that_is_down_never_stops_opc_ua(tiny_models, tmp_path):
    """MQTT unreachable from the start: OPC UA still answers triggers with fresh verdicts (spooled for MQTT)."""
    station = start_station(tmp_path, tiny_models, free_port(), "opcua-no-broker",  # nothing listens on that port
                            camera={"fps": 50, "loop": True}, service={"mode": "triggered"},
                            mqtt={"connect_timeout_s": 1})  # fmt: skip

    async def calls():
        async with session(station.url, "plc", PLC_PASSWORD) as client:
            ns, obj = await station_node(client, station.name)
            deadline = time.monotonic() + 60
            answers = []
            while len(answers) < 5:
                try:
                    answers.append(await obj.call_method(f"{ns}:Trigger", f"P-{len(answers)}"))
                except (ua.uaerrors.BadWaitingForInitialData, ua.uaerrors.BadNoCommunication):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            return answers, await client.get_node(f"ns={ns};s=Station.State").read_value()

    try:
        answers, state = asyncio.run(calls())
    finally:
        stderr = station.stop()
    assert station.proc.returncode == 0, stderr
    assert [a[0] for a in answers] == [f"P-{i}" for i in range(5)] and state == "online"
    assert "not reachable after 1 s; running anyway" in stderr
