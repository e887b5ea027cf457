"""The recalibration wizard: collect frames on the station, show acceptance, activate only on a click."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from edge_ad.config import EdgeAdConfig
from edge_ad.console.evidence import open_evidence
from edge_ad.console.recalibration import HISTOGRAM_PATTERN, Wizard, defect_folders, histogram_dir, unavailable
from edge_ad.console.security import Technician, Viewer
from edge_ad.errors import EdgeAdError
from edge_ad.publish.messages import MAX_FRAMES

__all__ = ["add_routes"]

MAX_HISTOGRAM_BYTES = 8 * 1024 * 1024


def add_routes(app: FastAPI, config: EdgeAdConfig, page: Callable) -> None:
    """Register this page's routes on the console ``app``; ``page(request, template, user, **context)`` renders."""
    wizard = Wizard(config)
    app.state.wizard = wizard

    @app.get("/recalibrate", response_class=HTMLResponse)
    def recalibrate_page(request: Request, user: Viewer):
        return page(request, "recalibrate.html.j2", user, job=wizard.job, note=unavailable(config),
                    frames=config.recalibration.needed_good_frames(), max_frames=MAX_FRAMES,
                    defects=defect_folders(config))  # fmt: skip

    @app.post("/recalibrate", response_class=HTMLResponse)
    def start(
        request: Request,
        user: Technician,
        frames: Annotated[str, Form()] = "",
        interval_s: Annotated[str, Form()] = "0.2",
        refit_memory: Annotated[str, Form()] = "",
        dry_run: Annotated[str, Form()] = "",
        defects_dir: Annotated[str, Form()] = "",
    ):
        try:
            count, interval = _numbers(frames, interval_s)
            if defects_dir and defects_dir not in defect_folders(config):
                raise EdgeAdError("that defects folder is not one this station offers")
            wizard.start(user.name, count, interval, refit_memory == "on", dry_run == "on", defects_dir or None)
        except EdgeAdError as exc:
            request.session["flash"] = f"NOT started: {exc}"
        return RedirectResponse("/recalibrate", status_code=303)

    @app.get("/recalibrate/progress")
    def progress(user: Viewer):
        job = wizard.job
        return JSONResponse(job.progress() if job else {"state": None, "done": True})

    @app.get("/recalibrate/histogram/{name}")
    def histogram(name: str, user: Viewer):
        fd = open_evidence(histogram_dir(config), name, HISTOGRAM_PATTERN)
        if fd is None:
            raise HTTPException(404, "no such histogram")
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_HISTOGRAM_BYTES + 1)
        if len(data) > MAX_HISTOGRAM_BYTES:
            raise HTTPException(404, "no such histogram")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _numbers(frames: str, interval_s: str) -> tuple[int, float]:
    """The form's frame count and interval, or one line saying which is wrong."""
    try:
        count = int(frames)
    except ValueError:
        raise EdgeAdError(f"frames: {frames[:20]!r} is not a whole number") from None
    if not 8 <= count <= MAX_FRAMES:
        raise EdgeAdError(f"frames: {count} is outside 8..{MAX_FRAMES}")
    try:
        interval = float(interval_s)
    except ValueError:
        raise EdgeAdError(f"interval: {interval_s[:20]!r} is not a number of seconds") from None
    if not 0 <= interval <= 60:  # also refuses nan
        raise EdgeAdError(f"interval: {interval_s[:20]} s is outside 0..60")
    return count, interval
