"""The console's MQTT feed and ``/events``, against a real mosquitto (tests/conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.config import EdgeAdConfig
from edge_ad.console.app import create_app, users_file
from edge_ad.console.feed import VERDICTS_KEPT, Feed
from edge_ad.console.users import add_user
from tests.support.broker import start_mosquitto
from tests.unit.console.conftest import PASSWORDS, closed_port, login

STATION = "press-3"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passed (a bound, not a sleep for correctness)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def broker_config(tmp_path: Path, models: Path, port: int, prefix: str = "edge_ad") -> EdgeAdConfig:
    return EdgeAdConfig.model_validate(
        {
            "station": STATION,
            "camera": {"source": str(tmp_path / "frames")},
            "model": {"path": str(models)},
            "mqtt": {"host": "127.0.0.1", "port": port, "prefix": prefix, "connect_timeout_s": 2},
            "service": {"state_dir": str(tmp_path / "state"), "drift": {"window": 50, "fraction": 0.8}},
        }
    )


def publisher(port: int, prefix: str = "edge_ad") -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}", userdata=prefix)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, leaf: str, payload: dict | bytes, retain: bool = False) -> None:
    """Publish on ``<prefix>/<station>/<leaf>`` (the client's prefix in its user data) and wait for the PUBACK."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    topic = f"{client.user_data_get() or 'edge_ad'}/{STATION}/{leaf}"
    client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)


def verdict(seq: int, kind: str = "OK", **extra) -> dict:
    score = 10.0 + seq * 0.01 if kind == "OK" else 40.0
    return {"schema": 2, "station": STATION, "run": "r1", "seq": seq, "ts": 1795614245.0 + seq,
            "time": "2026-11-25T13:44:05Z", "verdict": kind, "score": score, "threshold": 26.47,
            "score_norm": round(min(0.5 * score / 26.47, 1.0), 6), "latency_ms": 7.7, **extra}  # fmt: skip


@pytest.fixture
def broker_app(tmp_path, models, mosquitto) -> Iterator[tuple[TestClient, mqtt.Client]]:
    """The console on the session's mosquitto (a topic prefix of its own: no retained leftovers), logged in."""
    prefix = f"console-test-{time.monotonic_ns()}"
    config = broker_config(tmp_path, models, mosquitto.port, prefix)
    add_user(users_file(config), "vera", PASSWORDS["vera"], "viewer")
    pub = publisher(mosquitto.port, prefix)
    app = create_app(config)
    app.state.events_keepalive_s = 0.2  # every read below gets a line within this, so a deadline is checked
    try:
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            assert login(client, "vera").status_code == 303
            assert wait_until(lambda: app.state.feed.connected), app.state.feed.error
            yield client, pub
    finally:
        pub.disconnect()
        pub.loop_stop()


def events(lines: Iterator[str], deadline_s: float = 10.0) -> Iterator[tuple[str, dict]]:
    """(kind, data) of each SSE event; stops at the deadline (keepalive lines keep it checked)."""
    deadline = time.monotonic() + deadline_s
    kind = None
    for line in lines:
        if time.monotonic() > deadline:
            return
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind:
            yield kind, json.loads(line.removeprefix("data: "))
            kind = None


def test_events_deliver_state_and_a_verdict_published_after_connecting(broker_app):
    client, pub = broker_app
    publish(pub, "status", {"state": "online", "run": "r1", "reason": None}, retain=True)
    publish(pub, "stats", {"run": "r1", "fps": 9.5, "ng_rate": 0.02, "latency_ms": {"p50": 6.1, "p99": 9.8}},
            retain=True)  # fmt: skip
    feed = client.app.state.feed
    assert wait_until(lambda: feed.stats is not None)
    with client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response.iter_lines())
        kind, state = next(stream)
        assert kind == "state"
        assert state["state"] == "online" and state["fps"] == 9.5 and state["current"] is True
        publish(pub, "verdict", verdict(7, "NG", evidence="/elsewhere/x.jpg", hint={"label": "scratch"}, case=42))
        got = next((data for kind, data in stream if kind == "verdict"), None)  # None: nothing before the deadline
    assert got is not None, "no verdict event"
    assert got["seq"] == 7 and got["verdict"] == "NG" and got["label"] == "scratch" and got["case"] == 42
    assert got["image_url"] is None  # evidence outside the evidence folder is never served


def test_a_client_disconnect_ends_its_stream(broker_app):
    client, _ = broker_app
    streams = client.app.state.streams
    with client.stream("GET", "/events") as response:
        stream = events(response.iter_lines())  # kept: a collected line iterator closes the response
        next(stream)
        assert streams.open == 1
    assert wait_until(lambda: streams.open == 0, timeout=5), "the stream outlived its client"


def test_junk_on_the_topics_is_counted_and_ignored(broker_app):
    client, pub = broker_app
    feed = client.app.state.feed
    publish(pub, "verdict", verdict(1))
    for junk in (b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000, json.dumps({"verdict": "MAYBE"}).encode(),
                 json.dumps({"verdict": "OK", "score": "high"}).encode(), b"x" * 300_000,
                 b'{"verdict": "OK", "score": 1' + b"0" * 400 + b"}"):  # fmt: skip  # overflows a float
        publish(pub, "verdict", junk)
    publish(pub, "status", b"{broken", retain=False)
    publish(pub, "verdict", verdict(2))
    assert wait_until(lambda: feed.received == 2), feed.snapshot()
    assert feed.junk == {"verdict": 8, "status": 1}
    assert [v["seq"] for _, v in feed.verdicts_after(0)] == [1, 2]
    assert feed.connected and feed._thread is not None and feed._thread.is_alive()
    assert client.get("/").status_code == 200


def test_drift_series_last_ng_and_bounds():
    feed = Feed(broker_config(Path("/nonexistent"), Path("/nonexistent"), 1883))
    assert feed.drift_points == 50
    for seq in range(1, 301):
        feed.add_verdict(verdict(seq, "NG" if seq % 100 == 0 else "OK"))
    feed.add_verdict(verdict(300, "NG"))  # replayed after an outage: not kept twice
    assert feed.received == 300 and len(feed.verdicts) == VERDICTS_KEPT
    snap = feed.snapshot()
    assert len(snap["drift"]) == 50 and snap["drift"][-1] == verdict(299)["score_norm"]
    assert snap["last_ng"]["seq"] == 300
    assert [v["seq"] for v in feed.ng_verdicts()] == [300, 200]


def test_the_feed_survives_a_broker_outage(tmp_path, models):
    port = closed_port()
    feed = Feed(broker_config(tmp_path, models, port))
    feed.start()
    try:
        assert wait_until(lambda: feed.error is not None and "not reachable" in feed.error, timeout=5)
        assert not feed.connected
        for run in ("r1", "r2"):  # the broker comes, goes, comes again
            workdir = tmp_path / f"mqtt-{run}"
            workdir.mkdir()
            with start_mosquitto(workdir, port=port) as broker:
                assert wait_until(lambda: feed.connected, timeout=20), feed.error
                pub = publisher(broker.port)
                publish(pub, "status", {"state": "online", "run": run}, retain=True)
                assert wait_until(lambda run=run: (feed.status or {}).get("run") == run)
                pub.disconnect()
                pub.loop_stop()
            assert wait_until(lambda: not feed.connected, timeout=10)
    finally:
        feed.stop()
    assert feed._thread is None


def test_stop_is_prompt_without_a_broker(tmp_path, models):
    feed = Feed(broker_config(tmp_path, models, closed_port()))
    feed.start()
    assert wait_until(lambda: feed.error is not None, timeout=5)
    started = time.monotonic()
    feed.stop()
    assert time.monotonic() - started < 2.0
    assert not any(t.name == "console-feed" and t.is_alive() for t in threading.enumerate())


class _Connected:
    """A request whose client never goes away (what ``event_stream`` asks of it)."""

    async def is_disconnected(self) -> bool:
        return False


def _stream_writes(
    feed: Feed, camera: Callable[[], None], seconds: float, poll_s: float, state_every_s: float = 2.0
) -> list[tuple[float, bytes]]:
    """Run one ``/events`` stream for ``seconds`` beside ``camera`` (a thread adding verdicts): its writes, timed."""
    import asyncio

    from edge_ad.console.events import StreamCount, event_stream

    async def run() -> list[tuple[float, bytes]]:
        writes = []
        stream = event_stream(
            _Connected(),
            feed,
            Path("/nonexistent"),
            StreamCount(),
            poll_s=poll_s,
            state_every_s=state_every_s,
            keepalive_s=0.2,  # a quiet stream still yields, so the deadline is checked
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writes.append((time.monotonic(), await anext(stream)))
        await stream.aclose()
        return writes

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        return asyncio.run(run())
    finally:
        thread.join(10)


def test_a_stream_writes_right_after_a_verdict_not_across_the_next_inference():
    """At 10 fps a write follows its newest verdict by milliseconds (on a timer: anywhere in the 100 ms, median 50)."""
    feed = Feed(broker_config(Path("/nonexistent"), Path("/nonexistent"), 1883))
    added: list[float] = []

    def camera() -> None:
        for seq in range(1, 36):
            time.sleep(0.1)
            added.append(time.monotonic())
            feed.add_verdict(verdict(seq))

    writes = [(t, data) for t, data in _stream_writes(feed, camera, 3.0, poll_s=0.3) if b"event: verdict" in data]
    assert len(writes) >= 4, writes
    lags = sorted(t - max(a for a in added if a <= t) for t, _ in writes[1:])  # the first may be the backlog's
    shown = f"writes {[round(lag * 1000) for lag in lags]} ms after the newest verdict"
    assert lags[len(lags) // 2] < 0.03 and lags[-2] < 0.08, shown  # one stall of a loaded machine allowed


def test_an_ng_goes_out_at_once_and_a_slow_lines_part_within_poll_s():
    from edge_ad.console.events import ALIGN_S

    feed = Feed(broker_config(Path("/nonexistent"), Path("/nonexistent"), 1883))
    added: list[float] = []

    def camera() -> None:  # an OK part, an NG part at 10 fps, then a lone OK part on a slow line
        for seq, kind, pause in ((1, "OK", 0.5), (2, "NG", 0.1), (3, "OK", 1.4)):
            time.sleep(pause)
            added.append(time.monotonic())
            feed.add_verdict(verdict(seq, kind))

    writes = _stream_writes(feed, camera, 4.5, poll_s=2.0)
    first = {seq: next(t for t, data in writes if f'"seq":{seq},'.encode() in data) for seq in (2, 3)}
    assert first[2] - added[1] <= ALIGN_S + 0.1, "the NG waited for the next poll"
    assert first[3] - added[2] <= 2.0 + ALIGN_S + 0.1, "a lone part waited for one that never came"


def test_a_quiet_stations_state_change_is_written_within_a_poll():
    feed = Feed(broker_config(Path("/nonexistent"), Path("/nonexistent"), 1883))
    changed: list[float] = []

    def station_goes_offline() -> None:  # no verdicts at all: a trigger-mode station between parts
        time.sleep(1.1)
        with feed._lock:
            feed.status, feed.version = {"state": "offline", "run": "r1"}, feed.version + 1
        changed.append(time.monotonic())

    writes = _stream_writes(feed, station_goes_offline, 3.5, poll_s=0.5, state_every_s=0.5)
    offline = next((t for t, data in writes if b'"state":"offline"' in data), None)
    assert offline is not None, "the change never reached the page"
    assert offline - changed[0] <= 0.5 + 0.25, "a quiet station was polled less often than every poll_s"
