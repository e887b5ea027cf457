"""The Sparkplug metrics of a station: names, aliases, datatypes, and their values from verdicts and stats.

No protobuf here: the daemon imports this module whether or not Sparkplug is enabled. Aliases are
part of the interface (a host may keep them across births): never renumber one, only add new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from edge_ad.types import Verdict, published_scores, round_latency, round_score

__all__ = [
    "BDSEQ",
    "BY_NAME",
    "DEVICE_METRICS",
    "REBIRTH",
    "DataType",
    "MetricSpec",
    "Value",
    "camera_values",
    "model_values",
    "stats_values",
    "verdict_values",
]

Value = bool | int | float | str | None  # None: not known yet (sent with is_null in births)


class DataType(IntEnum):
    """The Sparkplug B datatypes edge_ad uses (numbers from ``DataType`` in sparkplug_b.proto)."""

    Int64 = 4
    UInt64 = 8
    Double = 10
    Boolean = 11
    String = 12


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (births), alias (births and data), datatype and how updates are sent.

    Attributes:
        event: Sent in DDATA with every update (each verdict is a reading of its own), not only when
            the value changed.
    """

    name: str
    datatype: DataType
    alias: int | None = None
    event: bool = False


# Edge Node metrics: no aliases (the spec forbids one on Node Control/Rebirth; NDEATH names bdSeq)
BDSEQ = MetricSpec("bdSeq", DataType.Int64)
REBIRTH = MetricSpec("Node Control/Rebirth", DataType.Boolean)

# the station device; '/' makes folders in Ignition's tag tree
DEVICE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("Inspection/NG", DataType.Boolean, 1, event=True),
    MetricSpec("Inspection/Score", DataType.Double, 2, event=True),
    MetricSpec("Inspection/Score Normalised", DataType.Double, 3, event=True),
    MetricSpec("Inspection/Threshold", DataType.Double, 4),
    MetricSpec("Inspection/Seq", DataType.UInt64, 5, event=True),
    MetricSpec("Inspection/Latency ms", DataType.Double, 6, event=True),
    MetricSpec("Model/Name", DataType.String, 7),
    MetricSpec("Model/Version", DataType.String, 8),
    MetricSpec("Model/Variant", DataType.String, 9),
    MetricSpec("Model/Precision", DataType.String, 10),
    MetricSpec("Camera/State", DataType.String, 11),
    MetricSpec("Stats/FPS", DataType.Double, 12),
    MetricSpec("Stats/NG Rate", DataType.Double, 13),
)
BY_NAME = {m.name: m for m in DEVICE_METRICS}


def model_values(model: dict[str, str], threshold: float) -> dict[str, Value]:
    """What judges: bundle name, version, the variant that runs, its precision, and its threshold."""
    return {
        "Inspection/Threshold": round_score(threshold),
        "Model/Name": model.get("name"),
        "Model/Version": model.get("version"),
        "Model/Variant": model.get("variant"),
        "Model/Precision": model.get("precision"),
    }


def verdict_values(verdict: Verdict) -> dict[str, Value]:
    """One verdict: NG (true) or OK (false), the scores, its sequence number and latency, and what judged it."""
    score, norm, _ = published_scores(verdict.score, verdict.threshold)
    return {
        "Inspection/NG": verdict.verdict == "NG",
        "Inspection/Score": score,
        "Inspection/Score Normalised": norm,
        "Inspection/Seq": int(verdict.seq),
        "Inspection/Latency ms": round_latency(verdict.latency_ms),
        **model_values(verdict.model, verdict.threshold),
    }


def camera_values(state: str) -> dict[str, Value]:
    """The camera's state (``online``/``offline``)."""
    return {"Camera/State": state}


def stats_values(fps: float, ng_rate: float) -> dict[str, Value]:
    """Rolling statistics of the recent window (the JSON stats' ``fps`` and ``ng_rate``)."""
    return {"Stats/FPS": float(fps), "Stats/NG Rate": float(ng_rate)}
