"""Every code block of docs/integration.md, run or checked against the real daemon on a private mosquitto.

A block's info string says how it is tested (```` ```python mqtt-subscriber ````): Python programs run
as subprocesses with their settings lines (``BROKER = ...`` at the top) rewritten for the test's
broker and station; ``yaml station`` blocks go through ``edge_ad.config.load_config``; the
``json node-red`` flow runs in a real headless Node-RED (``tests/support/node_red.py``) against the
station, its inject node triggering and its switch routing the answers; ``bash shell`` blocks are
syntax-checked, what they name must exist, and the Sparkplug ``mosquitto_sub | protoc`` pipeline runs
against the station.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.config import load_config
from edge_ad.publish import load_schema
from edge_ad.publish.topics import SparkplugTopics, Topics
from tests.support.broker import Broker, Recorder
from tests.support.net import free_port
from tests.support.node_red import node_red_command, run_flow
from tests.support.station import start_daemon, station_config
from tests.support.tiny_bundle import defect_image, good_image, write_frames

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integration.md"
DOC_STATION = "line3-cam1"  # the station every block of the page talks about
PLC_PASSWORD = "plc password for the docs test"

# (language, tag) of every kind of block, and the test that covers it
KINDS = {
    ("python", "mqtt-subscriber"): "test_python_subscriber_prints_the_real_verdicts",
    ("python", "sparkplug-listener"): "test_sparkplug_listener_prints_the_real_verdicts",
    ("python", "opcua-client"): "test_asyncua_client_triggers_and_gets_the_verdict",
    ("json", "node-red"): "test_node_red_flow_runs_in_node_red_against_the_station",
    ("yaml", "station"): "test_yaml_station_snippets_load_with_the_config_loader",
    ("bash", "shell"): "test_shell_snippets_are_valid_and_name_what_exists",
}


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, test tag, text and line in the file."""

    lang: str
    tag: str
    text: str
    line: int


def blocks(kind: tuple[str, str] | None = None) -> list[Block]:
    """The fenced blocks of docs/integration.md (all, or those of one kind)."""
    found, lines, i = [], DOC.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(.*)$", lines[i])
        if not match:
            i += 1
            continue
        indent, info = match.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        lang, _, tag = info.strip().partition(" ")
        found.append(Block(lang, tag.strip(), body, i + 1))
        i = end + 1
    return [b for b in found if kind is None or (b.lang, b.tag) == kind]


def configure(code: str, **settings: object) -> str:
    """Rewrite the settings lines ``NAME = value`` of a snippet (each must be there exactly once)."""
    for name, value in settings.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, flags=re.MULTILINE)
        assert n == 1, f"the snippet has {n} settings lines {name} = ..., expected 1"
    return code


def run_snippet(code: str, folder: Path, timeout: float = 90) -> list[str]:
    """Run a Python snippet in a fresh interpreter; its stdout lines (it must exit 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "snippet.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"snippet exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.splitlines()


@dataclass
class Station:
    """The running daemon (triggered, OPC UA and Sparkplug on) and what it published on its topics."""

    name: str
    broker: Broker
    recorder: Recorder
    opcua_url: str
    password_file: Path
    group: str

    def verdicts(self) -> dict[int, dict]:
        return {v["seq"]: v for v in self.recorder.on("verdict") if "seq" in v}


@pytest.fixture(scope="module")
def station(tmp_path_factory, tiny_models, mosquitto) -> Iterator[Station]:
    folder = tmp_path_factory.mktemp("docs-station")
    name = f"docs-{time.monotonic_ns()}"
    password_file = folder / "plc.pw"
    password_file.write_text(PLC_PASSWORD + "\n")
    port, group = free_port(), f"Docs {time.monotonic_ns()}"
    frames = write_frames(folder / "frames", [good_image(1), defect_image(2), good_image(3)])
    config = station_config(
        folder, str(frames), tiny_models / "tiny", mosquitto.port, station=name,
        camera={"fps": 20, "loop": True}, service={"mode": "triggered", "stats_interval_s": 0.5},
        sparkplug={"enabled": True, "group_id": group},
        opcua={"enabled": True, "endpoint": f"opc.tcp://127.0.0.1:{port}/edge_ad/",
               "users": [{"name": "plc", "password_file": str(password_file)}]},
    )  # fmt: skip
    with Recorder(mosquitto, topic=f"edge_ad/{name}/#") as rec:
        proc = start_daemon(config)
        try:
            assert rec.wait_for(lambda r: any(s.get("state") == "online" for s in r.on("status")), 60), (
                "the station did not come online"
            )
            yield Station(name, mosquitto, rec, f"opc.tcp://127.0.0.1:{port}/edge_ad/", password_file, group)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


@contextmanager
def triggering(station: Station, every_s: float = 0.3) -> Iterator[list[str]]:
    """A PLC that sends a trigger every ``every_s`` while the block runs; the ids it sent."""
    sent: list[str] = []
    stop = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"docs-plc-{time.monotonic_ns()}")
    client.connect(station.broker.host, station.broker.port)
    client.loop_start()

    def plc() -> None:
        while not stop.wait(every_s):
            sent.append(f"docs-{len(sent)}")
            client.publish(Topics(station.name).trigger(), json.dumps({"id": sent[-1]}), qos=1)

    thread = threading.Thread(target=plc, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(5)
        client.disconnect()
        client.loop_stop()


def only(kind: tuple[str, str]) -> Block:
    found = blocks(kind)
    assert len(found) == 1, f"expected one {kind} block in {DOC.name}, found {len(found)}"
    return found[0]


def test_every_block_is_tested():
    """No snippet goes untested: each block's kind has a test here, and each kind is on the page."""
    found = blocks()
    untested = [f"line {b.line}: ```{b.lang} {b.tag}" for b in found if (b.lang, b.tag) not in KINDS]
    assert not untested, f"blocks no test covers (tag them with a kind of KINDS): {untested}"
    assert {(b.lang, b.tag) for b in found} == set(KINDS), "a kind of KINDS is no longer on the page"
    assert all(name in globals() for name in KINDS.values())


def test_python_subscriber_prints_the_real_verdicts(station, tmp_path):
    code = configure(
        only(("python", "mqtt-subscriber")).text,
        BROKER=station.broker.host, PORT=station.broker.port, STATION=station.name, COUNT=3,
    )  # fmt: skip
    with triggering(station) as sent:
        lines = run_snippet(code, tmp_path)
    assert len(lines) == 3, lines
    assert station.recorder.wait_for(lambda _: all(int(line.split()[1]) in station.verdicts() for line in lines))
    for line in lines:
        verdict, seq, score, threshold, trigger = line.split()
        published = station.verdicts()[int(seq)]
        assert (verdict, trigger) == (published["verdict"], published["trigger"]["id"]) and trigger in sent
        assert (float(score), float(threshold)) == (published["score"], published["threshold"])


def test_sparkplug_listener_prints_the_real_verdicts(station, tmp_path):
    code = configure(
        only(("python", "sparkplug-listener")).text,
        BROKER=station.broker.host, PORT=station.broker.port, GROUP=station.group, NODE=station.name, COUNT=3,
    )  # fmt: skip
    with triggering(station):
        lines = run_snippet(code, tmp_path)
    births = [line for line in lines if line.startswith("birth:")]
    assert births and "Inspection/NG" in births[0] and "Model/Name" in births[0], lines
    verdicts = [line.split() for line in lines if line.split()[0] in ("OK", "NG")]
    assert len(verdicts) == 3, lines
    assert station.recorder.wait_for(lambda _: all(int(v[1]) in station.verdicts() for v in verdicts))
    for verdict, seq, score, norm in verdicts:
        published = station.verdicts()[int(seq)]
        assert verdict == published["verdict"]
        assert float(score) == pytest.approx(published["score"], abs=1e-5)
        assert float(norm) == pytest.approx(published["score_norm"], abs=1e-5)


def test_asyncua_client_triggers_and_gets_the_verdict(station, tmp_path):
    pytest.importorskip("asyncua")
    from tests.support.opcua import CLIENT_URI, client_certificate, wait_listening

    cert, key = client_certificate(tmp_path / "pki")
    part = f"docs-part-{time.monotonic_ns() % 10**9}"
    code = configure(
        only(("python", "opcua-client")).text,
        URL=station.opcua_url, STATION=station.name, PASSWORD_FILE=str(station.password_file),
        CERTIFICATE=str(cert), PRIVATE_KEY=str(key), APPLICATION_URI=CLIENT_URI, PART=part,
    )  # fmt: skip
    asyncio.run(wait_listening(station.opcua_url))
    lines = run_snippet(code, tmp_path)
    assert lines[0] == "model tiny", lines
    label, answered, verdict, ng, score = lines[1].split()
    assert (label, answered, ng) == ("answer", part, str(verdict == "NG")), lines
    assert lines[2] == (
        "refused BadInvalidArgument BadInvalidArgument: : trigger 'id' must be a string or integer of 1-64 characters"
    ), lines
    assert station.recorder.wait_for(lambda _: any(v["trigger"]["id"] == part for v in station.verdicts().values()))
    published = next(v for v in station.verdicts().values() if v["trigger"]["id"] == part)
    assert verdict == published["verdict"] and float(score) == pytest.approx(published["score"], abs=1e-5)


def node_red_or_skip() -> list[str]:
    """The Node-RED command; a skip where it is not installed, a failure in CI (``CI=true``: setup.sh installs it)."""
    command = node_red_command()
    if command is None:
        reason = "Node-RED not installed (bash scripts/setup.sh installs it into .node-red/; needs node and npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return command


def node_red_flow_for(flow: list[dict], station: Station, outputs_topic: str) -> list[dict]:
    """The doc's flow pointed at the test's broker and station, each switch output also published to MQTT.

    The switch's output ``i`` additionally goes to an ``mqtt out`` node on ``<outputs_topic>/<i>``, so the
    test sees what Node-RED routed where; nothing else of the doc's flow changes.
    """
    flow = json.loads(json.dumps(flow))
    for node in flow:
        if node["type"] == "mqtt-broker":
            node["broker"], node["port"] = station.broker.host, str(station.broker.port)
        elif node["type"] in ("mqtt in", "mqtt out"):
            node["topic"] = node["topic"].replace(f"/{DOC_STATION}/", f"/{station.name}/")
    route = next(n for n in flow if n["type"] == "switch")
    broker = next(n for n in flow if n["type"] == "mqtt-broker")
    for i, wires in enumerate(route["wires"]):
        sink = {"id": f"test_output_{i}", "type": "mqtt out", "z": route["z"], "name": f"test: output {i}",
                "topic": f"{outputs_topic}/{i}", "qos": "1", "retain": "false", "broker": broker["id"],
                "wires": []}  # fmt: skip
        flow.append(sink)
        wires.append(sink["id"])
    return flow


def test_node_red_flow_runs_in_node_red_against_the_station(station, tmp_path):
    """The doc's flow, imported into a real headless Node-RED (core nodes only), against the real station.

    Node-RED's inject node sends the triggers (the doc's own payload first), its mqtt out node
    delivers them, the station answers, and Node-RED's mqtt in -> json -> switch routes each real
    answer: NG to output 0, OK to 1, ERROR to 2 (a trigger with an unknown field: answered ERROR).
    """
    command = node_red_or_skip()
    flow = json.loads(only(("json", "node-red")).text)
    nodes = {n["id"]: n for n in flow}
    assert len(nodes) == len(flow), "node ids must be unique"
    for node in flow:
        assert all(target in nodes for output in node.get("wires", []) for target in output), node["id"]
        if node["type"].startswith("mqtt "):
            assert nodes[node["broker"]]["type"] == "mqtt-broker" and node["qos"] == "1", node["id"]
    by_type = {n["type"]: n for n in flow}
    # the topics are this station's (the test points them at its own station by replacing the name)
    assert by_type["mqtt in"]["topic"] == Topics(DOC_STATION).verdict()
    assert by_type["mqtt out"]["topic"] == Topics(DOC_STATION).trigger()
    # a retained trigger would be handed to the station again after each of its reconnects; a live
    # subscriber cannot tell it from a fresh one, so this is checked here and on the broker below
    assert by_type["mqtt out"]["retain"] == "false"
    inject, route = by_type["inject"], by_type["switch"]
    rules = [rule["v"] for rule in route["rules"]]
    assert rules == ["NG", "OK", "ERROR"] and route["outputs"] == len(route["wires"]) == 3
    doc_trigger = json.loads(inject["payload"])
    jsonschema.validate(doc_trigger, load_schema("trigger"))

    outputs_topic = f"node-red-test/{time.monotonic_ns()}/output"
    answers = lambda: station.recorder.on("verdict")  # noqa: E731  (verdicts and ERROR answers)
    answer = lambda id_: next((a for a in answers() if a.get("trigger", {}).get("id") == id_), None)  # noqa: E731
    sent: list[str | int] = []
    with (
        Recorder(station.broker, topic=f"{outputs_topic}/#") as routed,
        run_flow(node_red_flow_for(flow, station, outputs_topic), tmp_path / "node-red", command) as red,
    ):
        red.wait_for_log("Connected to broker", 15)

        def fire(payload: dict | None = None) -> dict:
            """Press the inject button (with ``payload`` instead of the doc's), wait for the station's answer."""
            red.inject(inject["id"], payload)
            sent.append((payload or doc_trigger)["id"])
            assert station.recorder.wait_for(lambda _: answer(sent[-1]), 10), (
                f"the station did not answer trigger {sent[-1]!r} sent by Node-RED:\n{red.tail()}"
            )
            return answer(sent[-1])

        # the doc's trigger, as the inject node has it: the station judges it
        assert fire()["verdict"] in ("OK", "NG")
        # more parts, until Node-RED has routed an OK and an NG (about a third of the looped frames is a defect)
        while {answer(i)["verdict"] for i in sent} != {"OK", "NG"} and len(sent) < 30:
            fire({"id": f"node-red-{len(sent)}"})
        # a trigger the station refuses (an unknown field) is answered ERROR, its id kept
        assert fire({"id": "node-red-bad", "part": 1})["verdict"] == "ERROR"
        expected = {i: rules.index(answer(i)["verdict"]) for i in sent}
        assert set(expected.values()) == {0, 1, 2}, expected
        # (trigger id, switch output) of every answer Node-RED routed
        got = lambda: [(p["trigger"]["id"], int(t.rsplit("/", 1)[1])) for t, p, _ in routed.messages]  # noqa: E731
        routed.wait_for(lambda _: set(expected.items()) <= set(got()), 10)
    ours = sorted((i, output) for i, output in got() if i in expected)
    assert ours == sorted(expected.items()), f"switch output per trigger id: Node-RED {ours}, verdicts {expected}"
    for topic, payload, _ in routed.messages:  # the station's own answers, unchanged, each on its output
        assert payload in answers() and rules[int(topic.rsplit("/", 1)[1])] == payload["verdict"], payload
    assert not [line for line in red.lines() if "[error]" in line], red.tail()
    with Recorder(station.broker, topic=Topics(station.name).trigger()) as kept:
        assert not kept.wait_for(lambda r: r.messages, 0.5), f"the broker keeps a trigger: {kept.messages}"


def station_yaml(block: Block, folder: Path) -> Path:
    """A station file: the snippet beside the camera: and model: sections every station has."""
    snippet = yaml.safe_load(block.text)
    assert "camera" not in snippet and "model" not in snippet
    path = folder / f"line{block.line}.yaml"
    path.write_text(block.text + yaml.safe_dump({"camera": {"source": 0}, "model": {"path": "models/brick"}}))
    return path


def test_yaml_station_snippets_load_with_the_config_loader(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    found = blocks(("yaml", "station"))
    assert len(found) == 2
    configs = [load_config(station_yaml(b, tmp_path)) for b in found]
    for config in configs:
        assert config.station == DOC_STATION
    sparkplug = next(c for c in configs if c.sparkplug.enabled)
    assert (sparkplug.sparkplug.group_id, sparkplug.mqtt.password_file) == ("Line3", tmp_path / "mqtt-password")
    opcua = next(c for c in configs if c.opcua.enabled)
    assert opcua.service.mode == "triggered" and [u.name for u in opcua.opcua.users] == ["plc", "scada"]


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block: its lines joined at ``\\``, split at ``|``, comments dropped."""
    text = block.text.replace("\\\n", " ")
    return [shlex.split(part, comments=True) for line in text.splitlines() for part in line.split("|")]


def test_shell_snippets_are_valid_and_name_what_exists(station, tmp_path):
    # the extras pyproject.toml declares (installed metadata may be older; no tomllib on 3.10)
    table = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = re.findall(r"^([\w-]+) = \[", table, flags=re.MULTILINE)
    assert {"sparkplug", "opcua"} <= set(extras)
    pipeline = None
    for block in blocks(("bash", "shell")):
        syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert syntax.returncode == 0, f"line {block.line}: {syntax.stderr}"
        for command in filter(None, shell_commands(block)):
            if command[:2] == ["pip", "install"]:
                extra = re.fullmatch(r"\.\[(\w+)\]", command[-1])
                assert extra and extra[1] in extras, command
            elif command[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(command[2]) is not None, command
            elif command[0] == "protoc":
                include = command[command.index("-I") + 1]
                assert (ROOT / include / command[-1]).is_file(), command
            elif command[0] == "mosquitto_sub":
                topic = command[command.index("-t") + 1]
                assert topic == SparkplugTopics("Line3", DOC_STATION, "station").device("DDATA")
                pipeline = block.text
            else:
                assert command[:2] == ["apt-get", "install"], f"no check for {command}"
    assert pipeline is not None
    # the pipeline itself, against the station: one DDATA, decoded by protoc with the shipped .proto
    if not (shutil.which("protoc") and shutil.which("mosquitto_sub")):
        pytest.skip("protoc or mosquitto_sub not installed")
    script = "\n".join(line for line in pipeline.splitlines() if not line.startswith("apt-get"))
    script = script.replace("-h BROKER", f"-h {station.broker.host} -p {station.broker.port}")
    script = script.replace("'spBv1.0/Line3/DDATA/line3-cam1/station'", shlex.quote(
        SparkplugTopics(station.group, station.name, "station").device("DDATA")))  # fmt: skip
    with triggering(station):
        proc = subprocess.run(["bash", "-c", "set -o pipefail\n" + script], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "metrics {" in proc.stdout and "alias:" in proc.stdout and "seq:" in proc.stdout, proc.stdout
