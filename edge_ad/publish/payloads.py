"""JSON payloads (schema version 1); their JSON Schemas live in ``schemas/``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Literal

from edge_ad.types import Verdict

__all__ = ["SCHEMA_VERSION", "load_schema", "stats_payload", "status_payload", "to_json", "verdict_payload"]

SCHEMA_VERSION = 1
State = Literal["online", "camera_offline", "offline", "error"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def verdict_payload(verdict: Verdict, station: str) -> dict[str, Any]:
    """The message published on ``<prefix>/<station>/verdict``."""
    payload = {
        "schema": SCHEMA_VERSION,
        "station": station,
        "seq": verdict.seq,
        "ts": round(verdict.ts, 3),
        "time": _iso(verdict.ts),
        "verdict": verdict.verdict,
        "score": round(verdict.score, 6),
        "threshold": round(verdict.threshold, 6),
        "model": dict(verdict.model),
        "latency_ms": round(verdict.latency_ms, 2),
        "frame": {"index": verdict.frame_index, "origin": verdict.origin},
    }
    payload.update(verdict.extra)
    return payload


def status_payload(
    station: str, state: State, reason: str = "", ts: float | None = None, **details: Any
) -> dict[str, Any]:
    """The retained message on ``<prefix>/<station>/status``."""
    ts = time.time() if ts is None else ts
    payload = {
        "schema": SCHEMA_VERSION,
        "station": station,
        "state": state,
        "reason": reason,
        "ts": round(ts, 3),
    }
    payload.update({k: v for k, v in details.items() if v is not None})
    return payload


def stats_payload(station: str, fields: dict[str, Any], ts: float | None = None) -> dict[str, Any]:
    """The retained message on ``<prefix>/<station>/stats``."""
    ts = time.time() if ts is None else ts
    return {"schema": SCHEMA_VERSION, "station": station, "ts": round(ts, 3)} | {
        k: v for k, v in fields.items() if v is not None
    }


def to_json(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def load_schema(name: Literal["verdict", "status", "stats"]) -> dict[str, Any]:
    """The JSON Schema shipped with the package for a message type."""
    text = resources.files("edge_ad.publish").joinpath("schemas", f"{name}.schema.json").read_text()
    return json.loads(text)
