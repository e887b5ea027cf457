"""The fleet view's pure parts: parsing hostile payloads, the silent rule, the table, the JSON."""

from __future__ import annotations

import json

import pytest

from edge_ad.fleet import view as fleet
from edge_ad.fleet.view import (
    FleetView,
    clean,
    parse_stats,
    parse_status,
    render_table,
    rows,
    select,
    stats_current,
    to_json,
)
from edge_ad.publish.payloads import stats_payload, status_payload, will_payload
from edge_ad.publish.payloads import to_json as payload_json
from tests.support.messages import check_message

NOW = 1_795_618_400.0
MODEL = {"name": "brick", "version": "2", "variant": "int8", "precision": "f32"}
FIELDS = {
    "frames": 12034, "ng": 37, "fps": 9.98, "latency_ms": {"p50": 6.1, "p99": 9.8}, "ng_rate": 0.003,
    "uptime_s": 1206.3, "dropped_frames": 0, "camera": "online", "device": "CPU", "model": MODEL, "spooled": 0,
}  # fmt: skip


def status(station: str = "s1", state: str = "online", run: str = "r1", **details) -> bytes:
    payload = status_payload(station, state, run=run, ts=NOW - 100, model=MODEL, device="CPU", **details)
    check_message("status", payload)  # the shape the daemon publishes
    return payload_json(payload)


def stats(station: str = "s1", run: str = "r1", age: float = 1.0, **changes) -> bytes:
    payload = stats_payload(station, FIELDS | changes, ts=NOW - age, run=run)
    check_message("stats", payload)
    return payload_json(payload)


def view_of(*messages: tuple[str, bytes]) -> FleetView:
    view = FleetView(None)
    for topic, payload in messages:
        view.receive(topic, payload)
    return view


def row_of(view: FleetView, silent_after_s: float = 30.0):
    (row,) = rows(view.snapshot(), NOW, silent_after_s)
    return row


def test_a_running_station_is_healthy_with_its_figures():
    row = row_of(view_of(("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats())))
    assert row.healthy and not row.silent and row.stats_current
    assert (row.station, row.state, row.model, row.version, row.variant) == ("s1", "online", "brick", "2", "int8")
    assert (row.fps, row.p99_ms, row.ng_rate, row.last_seen_s) == (9.98, 9.8, 0.003, 1.0)


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([("status", payload_json(will_payload("s1", "r1"))), ("stats", stats())], "offline: connection lost"),
        ([("status", status(state="offline", reason="stopped")), ("stats", stats(stale=True))], "offline: stopped"),
        ([("status", status(state="error", reason="camera failed"))], "error: camera failed"),
        ([("status", status())], "no stats"),
        ([("stats", stats())], "no status"),
        ([("status", status()), ("stats", stats(stale=True))], "stats of an ended run"),
        ([("status", status(run="r2")), ("stats", stats(run="r1"))], "stats of another run"),
        ([("status", status()), ("stats", stats(age=31))], "no stats for 31s"),
        ([("status", status()), ("stats", stats(age=3600))], "no stats for 60m"),
    ],
)
def test_silent_stations_and_why(messages, why):
    row = row_of(view_of(*((f"edge_ad/s1/{kind}", payload) for kind, payload in messages)))
    assert row.silent and row.silent_why == why and not row.healthy


def test_the_silent_limit_is_three_stats_intervals_when_longer_than_silent_after():
    view = view_of(
        ("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats(age=65)), ("edge_ad/s1/stats", stats(age=45))
    )
    assert view.snapshot().stations["s1"].interval_s == 20.0  # measured: the stats do not carry it
    assert not row_of(view).silent  # 45 s < 3 x 20 s
    assert row_of(view, silent_after_s=10).silent is False
    assert row_of(view_of(("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats(age=45)))).silent


def test_camera_offline_and_alarms_are_not_healthy_but_not_silent():
    alarmed = status(
        state="camera_offline",
        reason="no frames in 10 s",
        drift={"alarm": True, "median_ok_score": 24.1, "limit": 23.8},
        disk={"alarm": True, "message": "disk full"},
        variant_note="int8 refused here",
    )
    row = row_of(view_of(("edge_ad/s1/status", alarmed), ("edge_ad/s1/stats", stats())))
    assert not row.silent and not row.healthy and row.stats_current
    assert row.alarms == ["disk", "drift", "variant"]
    assert row.drift == {"alarm": True, "median_ok_score": 24.1, "limit": 23.8}
    table = render_table([row])
    assert "ALARM 24.1/23.8" in table and "no frames in 10 s, disk, drift, variant" in table


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'"online"',
        b"null",
        b'{"state": 1}',
        b'{"state": ["online"]}',
        b'{"state": ""}',
        b"[" * 100_000,
        b'{"state": "online", "x": "' + b"a" * (fleet.MAX_PAYLOAD + 1) + b'"}',
    ],
)
def test_a_malformed_status_is_counted_and_keeps_what_was_known(payload):
    view = view_of(("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats()), ("edge_ad/s1/status", payload))
    snapshot = view.snapshot()
    assert snapshot.junk == 1 and snapshot.last_junk.startswith("s1/status: ")
    row = row_of(view)
    assert row.state == "online" and row.junk == 1 and not row.healthy and not row.silent


@pytest.mark.parametrize(
    "payload",
    [
        b'{"state": "online", "ts": NaN, "model": [1], "drift": {"alarm": true, "median_ok_score": Infinity}}',
        b'{"state": "online", "ts": 1e999, "model": {"name": 7, "version": 2, "variant": null}, "run": 12}',
        b'{"state": "online", "ts": 1' + b"0" * 400 + b', "reason": {"a": 1}, "disk": {"alarm": "yes"}}',
        b'{"state": "online", "ts": true, "faults": {"alarm": true}, "drift": "high"}',
    ],
)
def test_wrong_types_and_odd_numbers_in_a_status_are_unknown_not_fatal(payload):
    parsed = parse_status(payload)
    assert parsed.state == "online" and parsed.ts is None
    assert parsed.reason == "" or isinstance(parsed.reason, str)
    row = row_of(view_of(("edge_ad/s1/status", payload), ("edge_ad/s1/stats", stats())))
    json.loads(to_json([row]))  # finite numbers only: strict JSON
    render_table([row])


@pytest.mark.parametrize(
    "payload",
    [
        b'{"fps": NaN, "latency_ms": {"p99": Infinity}, "ng_rate": 2, "ts": -Infinity}',
        b'{"fps": "fast", "latency_ms": [9.8], "ng_rate": -0.1, "ts": "now", "stale": "yes"}',
        b'{"fps": 1' + b"0" * 400 + b', "latency_ms": {"p99": true}, "ng_rate": null, "model": "brick"}',
        b'{"fps": -1, "latency_ms": null}',
    ],
)
def test_wrong_types_and_odd_numbers_in_stats_are_unknown(payload):
    parsed = parse_stats(payload)
    assert (parsed.fps, parsed.p99_ms, parsed.ng_rate, parsed.ts, parsed.stale) == (None, None, None, None, False)


def test_hostile_names_and_texts_never_reach_the_terminal():
    evil = "s\x1b[2J\x1b]0;owned\x07\u202e\u200b\x9b31m\x00"
    view = view_of(
        (f"edge_ad/{evil}/status", status(reason=f"{evil} reason", state="camera_offline")),
        (f"edge_ad/{evil}/stats", stats()),
        ("edge_ad/other/status", b"\x1b[31m" + b"x" * 300),
    )
    snapshot = view.snapshot()
    found = rows(snapshot, NOW)
    output = render_table(found, snapshot) + to_json(found, snapshot)
    for bad in ("\x1b", "\x07", "\u202e", "\u200b", "\x9b", "\x00"):
        assert bad not in output
    assert found[1].station == "s?[2J?]0;owned????31m?"
    assert all(ord(ch) < 128 for ch in to_json(found, snapshot))


def test_clean_cuts_long_text_and_keeps_ordinary_unicode():
    assert clean("Prüfstand 3 – Kamera") == "Prüfstand 3 – Kamera"
    assert clean("x" * 100, limit=10) == "x" * 9 + "~"
    assert clean(42) == "42"


def test_the_late_death_of_an_earlier_run_is_ignored():
    view = view_of(
        ("edge_ad/s1/status", status(run="new")),
        ("edge_ad/s1/stats", stats(run="new")),
        ("edge_ad/s1/status", payload_json(will_payload("s1", "old"))),
    )
    row = row_of(view)
    assert row.state == "online" and row.run == "new" and not row.silent


def test_an_empty_retained_message_clears_and_the_station_goes_away():
    view = view_of(("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats()), ("edge_ad/s1/stats", b""))
    assert row_of(view).silent_why == "no stats"
    view.receive("edge_ad/s1/status", b"")
    assert rows(view.snapshot(), NOW) == []


def test_other_topics_and_prefixes_are_ignored():
    view = view_of(
        ("edge_ad/s1/verdict", stats()),
        ("edge_ad/s1/status/x", status()),
        ("other/s1/status", status()),
        ("edge_ad//status", status()),
        ("edge_ad", status()),
    )
    assert view.snapshot().stations == {} and view.snapshot().junk == 0
    plant = FleetView(None, prefix="plant/a")
    plant.receive("plant/a/s9/status", status("s9"))
    assert list(plant.snapshot().stations) == ["s9"]


def test_the_number_of_stations_is_bounded(monkeypatch):
    monkeypatch.setattr(fleet, "MAX_STATIONS", 3)
    view = view_of(*((f"edge_ad/s{i}/status", status(f"s{i}")) for i in range(5)))
    snapshot = view.snapshot()
    assert len(snapshot.stations) == 3 and snapshot.junk == 2


def test_the_table_is_sorted_fixed_width_and_marks_silence():
    view = view_of(
        ("edge_ad/zeta/status", status("zeta")),
        ("edge_ad/zeta/stats", stats("zeta")),
        ("edge_ad/alpha/status", payload_json(will_payload("alpha", "r1"))),
        ("edge_ad/alpha/stats", stats("alpha", age=150)),
    )
    lines = render_table(rows(view.snapshot(), NOW)).splitlines()
    assert lines[0].startswith("STATION") and [line.split()[0] for line in lines[1:]] == ["alpha", "zeta"]
    assert lines[1].split()[1:3] == ["SILENT", "2m"] and lines[2].split()[1] == "OK"
    assert lines[1].index("offline") == lines[2].index("online")  # fixed-width columns
    assert "offline: connection lost" in lines[1]
    assert render_table([]).splitlines()[-1] == "(no stations)"


def test_the_json_shape():
    view = view_of(("edge_ad/s1/status", status()), ("edge_ad/s1/stats", stats()))
    snapshot = view.snapshot()
    document = json.loads(to_json(rows(snapshot, NOW), snapshot, NOW))
    assert document["ts"] == NOW and document["time"].endswith("Z") and document["healthy"] is True
    assert document["junk"] == {"count": 0, "latest": None}
    assert document["broker"] == {"connected": False, "error": None}
    (row,) = document["stations"]
    assert set(row) == {
        "station", "state", "reason", "run", "model", "version", "variant", "fps", "p99_ms", "ng_rate",
        "stats_current", "drift", "alarms", "last_seen_ts", "last_seen_s", "silent", "silent_why", "junk", "healthy",
    }  # fmt: skip
    assert json.loads(to_json([], None, NOW))["healthy"] is False  # no station is not a healthy fleet


def test_select_by_fnmatch_patterns():
    view = view_of(*((f"edge_ad/{n}/status", status(n)) for n in ("line3-cam1", "line3-cam2", "line4-cam1")))
    found = rows(view.snapshot(), NOW)
    assert [r.station for r in select(found, ["line3-*"])] == ["line3-cam1", "line3-cam2"]
    assert [r.station for r in select(found, ["*-cam1", "line3-cam2"])] == ["line3-cam1", "line3-cam2", "line4-cam1"]
    assert select(found, None) == found


@pytest.mark.parametrize(
    ("status_fields", "stats_fields"),
    [
        ({"state": "online", "run": "a"}, {"run": "a"}),
        ({"state": "camera_offline", "run": "a"}, {"run": "a"}),
        ({"state": "online", "run": "a"}, {"run": "a", "stale": True}),
        ({"state": "online", "run": "a"}, {"run": "b"}),
        ({"state": "offline", "run": "a"}, {"run": "a"}),
        ({"state": "error", "run": "a"}, {"run": "a"}),
        ({"state": "online"}, {}),
        ({"state": "online", "run": "a"}, {}),
    ],
)
def test_current_is_the_rule_of_edge_ad_status(status_fields, stats_fields):
    from edge_ad.publish.liveness import stats_are_current

    expected = stats_are_current(status_fields, stats_fields)
    parsed_status = parse_status(json.dumps(status_fields).encode())
    parsed_stats = parse_stats(json.dumps(stats_fields).encode())
    assert stats_current(parsed_status, parsed_stats) is expected
