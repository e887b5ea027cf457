"""JSON payloads (schema version 2), built as plain dicts; their shapes live in ``messages/``.

Two rules hold on every topic: one instant gives ``ts`` and ``time`` from the same whole millisecond
(:func:`stamp`), and scores, thresholds and ``score_norm`` are rounded by ``edge_ad.types.published_scores``
(the rule OPC UA and Sparkplug use too).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Literal

from edge_ad.publish.messages import MESSAGES, SCHEMA_VERSION
from edge_ad.types import Verdict, published_scores, round_latency, round_score

__all__ = [
    "SCHEMA_VERSION",
    "load_schema",
    "mark_replayed",
    "stamp",
    "stats_payload",
    "status_payload",
    "to_json",
    "trigger_error_payload",
    "verdict_payload",
    "will_payload",
]

State = Literal["online", "camera_offline", "offline", "error"]


def stamp(ts: float | None = None) -> dict[str, Any]:
    """``ts`` (epoch seconds) and ``time`` (ISO 8601 UTC) of one instant, both from the same whole millisecond."""
    ms = round((time.time() if ts is None else ts) * 1000)
    seconds = datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"ts": ms / 1000, "time": f"{seconds}.{ms % 1000:03d}Z"}


def _header(station: str, run: str | None) -> dict[str, Any]:
    header: dict[str, Any] = {"schema": SCHEMA_VERSION, "station": station}
    if run is not None:
        header["run"] = run
    return header


def verdict_payload(verdict: Verdict, station: str, run: str | None = None) -> dict[str, Any]:
    """The message published on ``<prefix>/<station>/verdict`` for one judged frame."""
    score, norm, threshold = published_scores(verdict.score, verdict.threshold)
    payload = {
        **_header(station, run),
        "seq": verdict.seq,
        **stamp(verdict.ts),
        "verdict": verdict.verdict,
        "score": score,
        "score_norm": norm,
        "threshold": threshold,
        "model": dict(verdict.model),
        "latency_ms": round_latency(verdict.latency_ms),
        "frame": {"index": verdict.frame_index, "origin": verdict.origin},
    }
    payload.update(verdict.extra)
    return payload


def trigger_error_payload(
    station: str, run: str | None, part: str | int, error: str, reason: str, ts: float | None = None
) -> dict[str, Any]:
    """The ERROR answer on the verdict topic to a trigger that gets no verdict (it has no ``seq``)."""
    return {
        **_header(station, run),
        **stamp(ts),
        "verdict": "ERROR",
        "trigger": {"id": part},
        "error": error,
        "reason": reason,
    }


def status_payload(
    station: str, state: State, reason: str = "", ts: float | None = None, run: str | None = None, **details: Any
) -> dict[str, Any]:
    """The retained message on ``<prefix>/<station>/status``."""
    payload = {**_header(station, run), "state": state, "reason": reason, **stamp(ts)}
    payload.update({k: v for k, v in details.items() if v is not None})
    if "threshold" in payload:
        payload["threshold"] = round_score(payload["threshold"])
    return payload


def will_payload(station: str, run: str | None = None) -> dict[str, Any]:
    """The Last Will: ``offline`` / ``connection lost``, without ``ts`` (only the broker knows when it is sent)."""
    return {**_header(station, run), "state": "offline", "reason": "connection lost"}


def stats_payload(
    station: str, fields: dict[str, Any], ts: float | None = None, run: str | None = None
) -> dict[str, Any]:
    """The retained message on ``<prefix>/<station>/stats``."""
    return {**_header(station, run), **stamp(ts)} | {k: v for k, v in fields.items() if v is not None}


def to_json(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def mark_replayed(payload: bytes) -> bytes:
    """A spooled message as sent after an outage or a restart: with ``"replayed": true`` (unchanged if not ours)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return payload
    return to_json({**message, "replayed": True}) if isinstance(message, dict) else payload


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped with the package for a message type (``verdict``, ``status``, ``trigger``...).

    Raises:
        KeyError: No such message type.
    """
    if name not in MESSAGES:
        raise KeyError(f"no schema {name!r}; have {', '.join(MESSAGES)}")
    text = resources.files("edge_ad.publish").joinpath("schemas", f"{name}.schema.json").read_text()
    return json.loads(text)
