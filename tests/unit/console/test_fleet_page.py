"""The console's fleet page: the rows of ``edge-ad fleet status``, from a FleetView fed directly (no broker)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from edge_ad.console.app import create_app
from edge_ad.fleet.view import FleetView
from edge_ad.publish.payloads import stats_payload, status_payload, to_json, will_payload
from tests.unit.console.conftest import login

MODEL = {"name": "brick", "version": "2", "variant": "int8", "precision": "f32"}
HOSTILE = "<img src=x onerror=alert(1)>"  # a topic level holds no "/"


def fed_view() -> FleetView:
    view = FleetView(None)
    now = time.time()
    fields = {"fps": 9.98, "latency_ms": {"p50": 6.1, "p99": 9.8}, "ng_rate": 0.003, "model": MODEL}
    view.receive("edge_ad/press-1/status", to_json(status_payload("press-1", "online", run="r1", model=MODEL)))
    view.receive("edge_ad/press-1/stats", to_json(stats_payload("press-1", fields, ts=now, run="r1")))
    view.receive("edge_ad/press-2/status", to_json(will_payload("press-2", "r2")))
    view.receive("edge_ad/press-2/stats", to_json(stats_payload("press-2", fields, ts=now - 600, run="r2")))
    hostile = status_payload(HOSTILE, "camera_offline", reason=f"\x1b[2J{HOSTILE}", run="r3", model=MODEL)
    view.receive(f"edge_ad/{HOSTILE}/status", to_json(hostile))
    view.receive("edge_ad/press-4/status", b"\x1b[31mnot json")
    return view


@pytest.fixture
def client(config):
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as c:
        yield c


def test_a_viewer_sees_every_station_silent_ones_marked(client):
    client.app.state.fleet = fed_view()
    assert client.get("/fleet").status_code == 303  # not logged in: the login page
    assert login(client, "vera").status_code == 303
    page = client.get("/fleet")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/fleet">Fleet</a>' in html and '<script src="/static/fleet.js" defer></script>' in html
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    assert len(rows) == 4
    press1, press2 = (next(r for r in rows if f">{name}<" in r) for name in ("press-1", "press-2"))
    assert 'class=""' in press1 and "brick v2 (int8)" in press1 and "10.0" in press1 and "0.30 %" in press1
    assert 'class="silent"' in press2 and "SILENT 10m" in press2 and "offline: connection lost" in press2
    assert "1 malformed" in html and "Ignored 1 malformed message(s)" in html


def test_hostile_names_and_reasons_are_escaped(client):
    client.app.state.fleet = fed_view()
    login(client, "vera")
    html = client.get("/fleet").text
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\x1b" not in html
    assert html.count("<script") == 1  # only fleet.js


def test_the_fragment_and_the_json_show_the_same_rows(client):
    client.app.state.fleet = fed_view()
    login(client, "vera")
    fragment = client.get("/fleet?fragment=1")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "<nav>" not in fragment.text and '<table class="fleet">' in fragment.text
    assert "SILENT" in fragment.text
    document = json.loads(client.get("/fleet.json").text)
    assert document["healthy"] is False and document["junk"]["count"] == 1
    stations = {row["station"]: row for row in document["stations"]}
    assert stations["press-1"]["healthy"] and stations["press-2"]["silent"]


def test_the_view_starts_on_first_use_and_stops_with_the_app(config):
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as c:
        view = c.app.state.fleet
        assert not view.started  # nobody asked for the fleet yet: no second connection
        login(c, "vera")
        html = c.get("/fleet").text
        assert view.started and "not reachable" in html  # the conftest's broker port is closed
    assert not view.started
