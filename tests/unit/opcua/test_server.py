"""The OPC UA server in-process with a real asyncua client over loopback and a stand-in for the daemon."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytest.importorskip("asyncua")

from asyncua import ua

from edge_ad.config import OpcUaConfig
from edge_ad.guard import Guard
from edge_ad.opcua.auth import hash_password
from edge_ad.opcua.server import OpcUaServer
from edge_ad.service.modes import TriggerInbox, TriggerRejected
from edge_ad.types import Verdict
from tests.support.net import free_port
from tests.support.opcua import session, station_node

PASSWORD = "correct horse"


def make_server(tmp_path, accept=None, **kwargs) -> tuple[OpcUaServer, str]:
    url = f"opc.tcp://127.0.0.1:{kwargs.pop('port', None) or free_port()}/edge_ad/"
    config = OpcUaConfig(
        enabled=True,
        endpoint=url,
        security_policies=["None", "Basic256Sha256_SignAndEncrypt"],
        users=[{"name": "plc", "password_hash": hash_password(PASSWORD)}],
    )
    return OpcUaServer(config, "unit", tmp_path, accept_trigger=accept, **kwargs), url


def judge_in_background(inbox: TriggerInbox, stop: threading.Event) -> threading.Thread:
    """Answers every queued trigger with a verdict, as the daemon's loop does (seq 1, 2, ...)."""

    def loop() -> None:
        seq = 0
        while not stop.is_set():
            trigger = inbox.take_for(time.time())
            if trigger is not None and trigger.reply is not None:
                seq += 1
                extra = {"trigger": {"id": trigger.id}}
                trigger.reply.answered(Verdict(seq, time.time(), "OK", 1.0, 2.0, {}, 1.0, seq, extra=extra))
            time.sleep(0.005)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_a_bug_in_the_trigger_handler_is_counted_and_the_server_goes_on(tmp_path):
    inbox, stop, alarms = TriggerInbox(), threading.Event(), []
    failures = iter([RuntimeError("boom")])

    def accept(part, reply):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        inbox.push(str(part), time.time(), reply)

    guard = Guard(on_alarm=lambda: alarms.append(guard.alarm))
    server, url = make_server(tmp_path, accept, guard=guard)
    server.start()
    judge_in_background(inbox, stop)

    async def calls():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            with pytest.raises(ua.uaerrors.BadInternalError):
                await station.call_method(f"{ns}:Trigger", "P-1")
            return await station.call_method(f"{ns}:Trigger", "P-2")

    try:
        assert asyncio.run(calls())[0] == "P-2"
    finally:
        stop.set()
        server.stop()
    assert guard.errors == {"opcua Trigger": 1} and len(alarms) == 1
    assert "RuntimeError: boom" in alarms[0]["message"]


def test_a_port_in_use_is_an_alarm_and_the_server_comes_up_once_it_is_free(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    alarms: list[str | None] = []
    server, _ = make_server(
        tmp_path, port=blocker.getsockname()[1], retry_s=(0.2, 0.5), on_alarm=lambda: alarms.append(server.alarm)
    )
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not alarms and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alarms and "cannot serve" in alarms[0] and "Errno" in alarms[0], alarms
        assert not server.listening
        blocker.close()
        while (server.alarm or not server.listening) and time.monotonic() < deadline + 30:
            time.sleep(0.05)
        assert server.listening and server.alarm is None and alarms[-1] is None
    finally:
        blocker.close()
        server.stop()
    assert not server._thread.is_alive()


def test_a_call_without_an_answer_times_out_and_withdraws_its_trigger(tmp_path):
    inbox = TriggerInbox(timeout_s=60)
    server, url = make_server(tmp_path, lambda part, reply: inbox.push(str(part), time.time(), reply),
                              answer_timeout_s=0.5)  # fmt: skip
    server.start()

    async def call():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            started = time.monotonic()
            with pytest.raises(ua.uaerrors.BadTimeout):
                await station.call_method(f"{ns}:Trigger", "P-late")
            took = time.monotonic() - started
            await asyncio.sleep(0.2)
            return took, await client.get_node(f"ns={ns};s=Station.LastTriggerError").read_value()

    try:
        took, error = asyncio.run(call())
    finally:
        server.stop()
    assert 0.4 < took < 5
    assert error.startswith("BadTimeout: P-late: no verdict within 0.5 s")
    assert inbox.take_for(time.time()) is None, "a frame after the timeout must not answer a withdrawn trigger"
    assert inbox.expired == 1 and server.counters()["refused"] == 1


def test_stopping_answers_a_waiting_call_with_bad_shutdown(tmp_path):
    server, url = make_server(tmp_path, lambda part, reply: None, answer_timeout_s=60)  # accepted, never answered
    server.start()

    async def call():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            threading.Timer(0.5, server.stop).start()
            with pytest.raises(ua.uaerrors.BadShutdown):
                await station.call_method(f"{ns}:Trigger", "P-1")

    asyncio.run(call())
    server._thread.join(10)
    assert not server._thread.is_alive()


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (TriggerRejected("mode", "free_run"), ua.uaerrors.BadInvalidState),
        (TriggerRejected("camera", "camera offline"), ua.uaerrors.BadNoCommunication),
        (TriggerRejected("invalid", "too long"), ua.uaerrors.BadInvalidArgument),
    ],
)
def test_a_refusal_is_its_bad_code_and_the_reason_is_readable(tmp_path, reason, code):
    def accept(part, reply):
        raise reason

    server, url = make_server(tmp_path, accept)
    server.start()

    async def call():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            with pytest.raises(code):
                await station.call_method(f"{ns}:Trigger", "P-9")
            await asyncio.sleep(0.2)  # the variable is written by the server's loop
            text = await client.get_node(f"ns={ns};s=Station.LastTriggerError").read_value()
            with pytest.raises(ua.uaerrors.BadArgumentsMissing):
                await station.call_method(f"{ns}:Trigger")
            return text

    try:
        assert asyncio.run(call()) == f"{code.__name__}: P-9: {reason.reason}"
    finally:
        server.stop()


def test_a_waiting_call_never_holds_up_the_clients_other_requests(tmp_path):
    """asyncua answers a connection's requests in turn: a Trigger waiting 3 s for its frame held up the client's
    1 s keep-alive probe, and the client dropped the session. Calls now run on their own."""
    server, url = make_server(tmp_path, lambda part, reply: None, answer_timeout_s=3.0)  # never answered
    server.start()

    async def meanwhile():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            state = client.get_node(f"ns={ns};s=Station.State")
            waiting = asyncio.ensure_future(station.call_method(f"{ns}:Trigger", "P-slow"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            for _ in range(10):
                await state.read_value()
            reads_took = time.monotonic() - started
            assert not waiting.done()
            with pytest.raises(ua.uaerrors.BadTimeout):
                await waiting
            await asyncio.sleep(1.5)  # past the client's watchdog probes: still connected
            return reads_took, await state.read_value()

    try:
        reads_took, state = asyncio.run(meanwhile())
    finally:
        server.stop()
    assert reads_took < 1.0 and state == "starting"


def test_opc_ua_calls_take_at_most_their_share_of_the_trigger_queue(tmp_path, monkeypatch):
    """Found by the reviewer: 64 waiting OPC UA calls pushed the MQTT triggers out of the shared queue."""
    monkeypatch.setattr("edge_ad.opcua.server.MAX_WAITING", 2)
    inbox = TriggerInbox(timeout_s=60)
    server, url = make_server(tmp_path, lambda part, reply: inbox.push(str(part), time.time(), reply),
                              answer_timeout_s=1.5)  # fmt: skip
    server.start()

    async def calls():
        async with session(url, "plc", PASSWORD) as client:
            ns, station = await station_node(client, "unit")
            waiting = [asyncio.create_task(station.call_method(f"{ns}:Trigger", f"P-{i}")) for i in range(2)]
            await asyncio.sleep(0.3)
            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await station.call_method(f"{ns}:Trigger", "P-extra")
            await asyncio.sleep(0.2)
            text = await client.get_node(f"ns={ns};s=Station.LastTriggerError").read_value()
            await asyncio.gather(*waiting, return_exceptions=True)
            return text

    try:
        text = asyncio.run(calls())
    finally:
        server.stop()
    assert text.startswith("BadTooManyOperations: P-extra: 2 OPC UA Trigger calls already waiting")
    assert inbox.accepted == 2, "the refused call never reached the queue"
