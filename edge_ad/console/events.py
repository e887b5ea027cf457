"""``/events``: the live page's server-sent events, made from the :class:`~edge_ad.console.feed.Feed`.

Two kinds of event, each one JSON object on one ``data:`` line:

- ``state``: connection, station state, fps, latency, NG rate, the drift series and the last NG
  part; sent at the start and whenever one of them changed (at most every ``state_every_s``).
- ``verdict``: one per verdict, in order; a new stream first gets the last :data:`BACKLOG`.

A comment line every ``keepalive_s`` keeps proxies from closing a quiet stream. The stream ends
when the client goes away, and after ``max_s`` (the browser's EventSource reconnects by itself),
so that no stream outlives a restart of the console by long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Request

from edge_ad.console.evidence import heatmap_name, url_of
from edge_ad.console.feed import Feed
from edge_ad.publish.liveness import stats_are_current

__all__ = ["BACKLOG", "StreamCount", "event_stream", "next_verdict", "shape_state", "shape_verdict"]

BACKLOG = 20
RETRY_MS = 2000
ALIGN_S = 0.25  # how long pending verdicts wait for the next one to follow


class StreamCount:
    """How many ``/events`` streams are open (the event loop's own counter: no lock)."""

    def __init__(self) -> None:
        self.open = 0


def _scalars(message: dict[str, Any] | None) -> dict[str, Any] | None:
    if message is None:
        return None
    return {k: v for k, v in message.items() if v is None or isinstance(v, (str, int, float, bool))}


def shape_verdict(folder: Path, verdict: dict[str, Any], number: int | None = None) -> dict[str, Any]:
    """What the page needs of a verdict: its figures, hint, case and the URLs of its evidence (when served)."""
    evidence = verdict.get("evidence")
    image = url_of(folder, evidence)
    heat = url_of(folder, str(Path(evidence).with_name(heatmap_name(Path(evidence).name)))) if image else None
    hint = verdict.get("hint") if isinstance(verdict.get("hint"), dict) else {}
    shaped = {
        key: verdict.get(key)
        for key in ("verdict", "seq", "time", "ts", "score", "threshold", "score_norm", "latency_ms", "replayed")
    }
    shaped.update(
        n=number,
        label=hint.get("label") if isinstance(hint.get("label"), str) else None,
        similarity=hint.get("similarity") if isinstance(hint.get("similarity"), (int, float)) else None,
        case=verdict.get("case") if isinstance(verdict.get("case"), int) else None,
        reason=verdict.get("reason") if isinstance(verdict.get("reason"), str) else None,
        image_url=image,
        heatmap_url=heat,
    )
    return shaped


def shape_state(feed: Feed, folder: Path, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``state`` event: what the header figures, the drift sparkline and the last-NG card show."""
    snap = snapshot or feed.snapshot()
    status, stats = snap["status"] or {}, snap["stats"] or {}
    latency = stats.get("latency_ms") if isinstance(stats.get("latency_ms"), dict) else {}
    return {
        "connected": snap["connected"],
        "error": snap["error"],
        "state": status.get("state"),
        "reason": status.get("reason"),
        "current": bool(status and stats and stats_are_current(status, stats)),
        "fps": stats.get("fps"),
        "latency_p50": latency.get("p50"),
        "latency_p99": latency.get("p99"),
        "ng_rate": stats.get("ng_rate"),
        "frames": stats.get("frames"),
        "ng": stats.get("ng"),
        "drift": snap["drift"],
        "drift_limit": 0.5 * feed.drift_fraction if feed.drift_fraction else None,
        "drift_alarm": bool(status.get("drift")),
        "status": _scalars(snap["status"]),
        "stats": _scalars(snap["stats"]),
        "last_ng": shape_verdict(folder, snap["last_ng"]) if snap["last_ng"] else None,
        "junk": snap["junk"],
    }


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither; retained messages may carry them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _event(kind: str, data: dict[str, Any]) -> bytes:
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return f"event: {kind}\ndata: {text}\n\n".encode()


async def next_verdict(feed: Feed, timeout: float, ng_only: bool = False, after: int | None = None) -> bool:
    """Wait until the feed keeps its next verdict (an NG: ``ng_only``; True) or ``timeout`` passed (False).

    With ``after``, one the feed already kept past verdict number ``after`` counts at once.

    The stream writes right after a verdict: in the gap between the daemon's inferences, not across
    one (on a 2-core station a page's work during an inference shows in the model's p99).
    """
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()

    def wake() -> None:  # on the feed's MQTT thread
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (console stopping)
            loop.call_soon_threadsafe(arrived.set)

    forget = feed.on_next_verdict(wake, ng_only, after)
    try:
        await asyncio.wait_for(arrived.wait(), timeout)
        return True
    except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
        return False
    finally:
        forget()


async def event_stream(
    request: Request,
    feed: Feed,
    folder: Path,
    count: StreamCount,
    poll_s: float = 2.0,
    keepalive_s: float = 15.0,
    max_s: float = 600.0,
    state_every_s: float = 2.0,
) -> AsyncIterator[bytes]:
    """The SSE byte stream of one client, until it disconnects or ``max_s`` passed.

    What a poll found goes out in one write (a browser on the station's own PC wakes every ``poll_s``,
    not once per verdict), and the state at most once every ``state_every_s``. An NG goes out as soon
    as it arrives; otherwise after ``poll_s`` pending verdicts wait for the next one (at most
    :data:`ALIGN_S`), so the page's work follows an inference instead of falling across one. A quiet
    station (nothing pending: no inference to fall across) is polled every ``poll_s``.
    """
    count.open += 1
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        version = -1
        backlog = feed.verdicts_after(0)[-BACKLOG:]
        last = backlog[0][0] - 1 if backlog else feed.received
        start = quiet = time.monotonic()
        stated = -state_every_s
        while time.monotonic() - start < max_s:
            if await request.is_disconnected():
                return
            now = time.monotonic()
            chunk: list[bytes] = []
            snap = feed.snapshot()
            if snap["version"] != version and now - stated >= state_every_s:
                version, stated = snap["version"], now
                chunk.append(_event("state", shape_state(feed, folder, snap)))
            for number, verdict in feed.verdicts_after(last):
                last = number
                chunk.append(_event("verdict", shape_verdict(folder, verdict, number)))
            if chunk:
                quiet = now
                yield b"".join(chunk)
            elif now - quiet >= keepalive_s:
                quiet = now
                yield b": keepalive\n\n"
            await asyncio.sleep(ALIGN_S)  # writes stay ALIGN_S apart, also when every part is NG
            if await next_verdict(feed, max(poll_s - ALIGN_S, 0.0), ng_only=True, after=last):
                continue  # an NG goes out at once (it has just been judged: the gap after an inference)
            if feed.received > last:  # pending parts wait at most ALIGN_S for the next one to follow
                await next_verdict(feed, ALIGN_S)  # (a slow line's parts are on the page within poll_s + ALIGN_S)
    finally:
        count.open -= 1
