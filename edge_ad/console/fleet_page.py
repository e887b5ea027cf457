"""The fleet page: every station on this station's broker, one row each (the rows of ``edge-ad fleet status``).

One :class:`~edge_ad.fleet.view.FleetView` per console process, on the console's own ``mqtt`` section, started
the first time someone opens the page (a console nobody asks for the fleet opens no second connection) and
stopped when the app shuts down (``app.state.on_stop``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from edge_ad.config import EdgeAdConfig
from edge_ad.console.security import Viewer
from edge_ad.fleet.view import DEFAULT_SILENT_AFTER_S, FleetView, age_text, rows, to_json

__all__ = ["FIRST_WAIT_S", "add_routes"]

FIRST_WAIT_S = 1.5  # the first request waits this long for the subscription and the retained messages


def add_routes(app: FastAPI, config: EdgeAdConfig, page: Callable) -> None:
    """Register ``GET /fleet`` (viewer; ``?fragment=1``: the table only) and ``GET /fleet.json`` on the console."""
    app.state.fleet = FleetView(config.mqtt)
    started = threading.Lock()
    app.state.on_stop.append(app.state.fleet.stop)

    def current(request: Request) -> FleetView:
        view: FleetView = request.app.state.fleet
        with started:
            if view.mqtt is not None and not view.started:
                view.start()
                if view.wait_ready(FIRST_WAIT_S):
                    time.sleep(0.3)  # retained messages follow the subscription at once
        return view

    @app.get("/fleet", response_class=HTMLResponse)
    def fleet_page(request: Request, user: Viewer, fragment: str = ""):
        view = current(request)
        snapshot = view.snapshot()
        found = rows(snapshot, time.time(), DEFAULT_SILENT_AFTER_S)
        broker = f"{config.mqtt.host}:{config.mqtt.port}"
        return page(request, "fleet.html.j2", user, rows=found, snapshot=snapshot, prefix=view.prefix,
                    fragment=fragment == "1", broker=broker, age=age_text)  # fmt: skip

    @app.get("/fleet.json")
    def fleet_json(request: Request, user: Viewer):
        view = current(request)
        snapshot, now = view.snapshot(), time.time()
        body = to_json(rows(snapshot, now, DEFAULT_SILENT_AFTER_S), snapshot, now)
        return Response(body, media_type="application/json")
