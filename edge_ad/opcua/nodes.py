"""The ``Station`` object's address space as data: node ids, types, and the values a verdict, model or status gives.

Every node id is a string id in the station's own namespace ``urn:edge_ad:<station>`` (index 2):
``ns=2;s=Station.LastVerdict``. They are part of the interface (docs/integration.md lists them; a test
checks the list) and never change meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_ad.service.modes import Outcome
from edge_ad.types import Verdict, published_scores, round_latency, round_score

__all__ = [
    "FOLDERS",
    "INPUTS",
    "OUTPUTS",
    "REFUSALS",
    "ROOT",
    "TRIGGER",
    "VARIABLES",
    "Variable",
    "application_uri",
    "model_values",
    "namespace_uri",
    "node_id",
    "stats_values",
    "status_values",
    "trigger_outputs",
    "verdict_values",
]

ROOT = "Station"
TRIGGER = "Trigger"
FOLDERS = ("Model", "Counters")


@dataclass(frozen=True)
class Variable:
    """A read-only variable of the Station object: ``name`` (dotted below Station), OPC UA type, initial value."""

    name: str
    type: str  # a ua.VariantType name
    initial: Any
    description: str


VARIABLES: tuple[Variable, ...] = (
    Variable("LastVerdict", "String", "", "OK or NG: the verdict of the latest judged frame ('' before the first)."),
    Variable("NG", "Boolean", False, "True when the latest verdict is NG."),
    Variable("Score", "Double", 0.0, "Raw anomaly score of the latest verdict (the bundle's score space)."),
    Variable("ScoreNorm", "Double", 0.0, "0.5 * Score / Threshold clipped to 0..1: NG exactly when >= 0.5."),
    Variable("Threshold", "Double", 0.0, "Threshold the running model judges with (NG when Score >= Threshold)."),
    Variable("Seq", "Int64", 0, "Sequence number of the latest verdict, as in the MQTT verdict (0: none yet)."),
    Variable("TriggerId", "String", "", "Triggered mode: the trigger id the latest verdict answers."),
    Variable("LatencyMs", "Double", 0.0, "Preprocessing + inference time of the latest verdict."),
    Variable("State", "String", "starting", "starting, online, camera_offline, offline or error (MQTT status)."),
    Variable("Reason", "String", "", "Why, for camera_offline, offline and error (MQTT status reason)."),
    Variable("Alarm", "String", "", "The station's alarms (drift, disk, faults, ...), '; '-separated; '' when none."),
    Variable("LastTriggerError", "String", "", "Why the latest refused or timed-out Trigger call got no verdict."),
    Variable("Fps", "Double", 0.0, "Frames judged per second (last 1000 frames; every stats interval)."),
    Variable("NgRate", "Double", 0.0, "Share of NG verdicts (last 1000 frames; every stats interval)."),
    Variable("Model.Name", "String", "", "Bundle name of the model that judges."),
    Variable("Model.Version", "String", "", "Bundle version."),
    Variable("Model.Variant", "String", "", "Variant that runs: fp32, int8, bf16 or f16."),
    Variable("Model.Precision", "String", "", "Precision of its float layers: f32, bf16 or f16."),
    Variable("Counters.Frames", "Int64", 0, "Verdicts since the daemon started."),
    Variable("Counters.OK", "Int64", 0, "OK verdicts since the daemon started."),
    Variable("Counters.NG", "Int64", 0, "NG verdicts since the daemon started."),
    Variable("Counters.Errors", "Int64", 0, "Unexpected errors the daemon caught and survived (MQTT stats faults)."),
)

# Trigger(Id) -> outputs; (name, type, description)
INPUTS: tuple[tuple[str, str, str], ...] = (("Id", "String", "Part id, 1-64 characters (echoed)."),)
OUTPUTS: tuple[tuple[str, str, str], ...] = (
    ("Id", "String", "The part id of the call."),
    ("Verdict", "String", "OK or NG."),
    ("NG", "Boolean", "True for NG."),
    ("Score", "Double", "Raw anomaly score."),
    ("ScoreNorm", "Double", "0.5 * Score / Threshold clipped to 0..1."),
    ("Threshold", "Double", "Threshold the verdict was judged with."),
    ("Seq", "Int64", "Sequence number of the verdict (the same in the MQTT verdict)."),
    ("LatencyMs", "Double", "Preprocessing + inference time."),
    ("CaptureTime", "DateTime", "When the judged frame was captured (UTC)."),
)

# why a Trigger call got no verdict -> OPC UA status code name
REFUSALS: dict[Outcome, str] = {
    "invalid": "BadInvalidArgument",
    "mode": "BadInvalidState",
    "starting": "BadWaitingForInitialData",
    "camera": "BadNoCommunication",
    "stopping": "BadShutdown",
    "dropped": "BadTooManyOperations",
    "expired": "BadTimeout",
}


def namespace_uri(station: str) -> str:
    """The namespace of the station's nodes."""
    return f"urn:edge_ad:{station}"


def application_uri(station: str) -> str:
    """The server's ApplicationUri (also in its certificate)."""
    return f"urn:edge_ad:{station}:server"


def node_id(name: str = "") -> str:
    """The string identifier of ``Station.<name>`` (``Station`` itself for an empty name)."""
    return f"{ROOT}.{name}" if name else ROOT


def verdict_values(verdict: Verdict) -> dict[str, Any]:
    """Variables that change with every verdict (the counters are the server's)."""
    trigger = verdict.extra.get("trigger") if isinstance(verdict.extra, Mapping) else None
    score, norm, threshold = published_scores(verdict.score, verdict.threshold)
    return {
        "LastVerdict": verdict.verdict,
        "NG": verdict.verdict == "NG",
        "Score": score,
        "ScoreNorm": norm,
        "Threshold": threshold,
        "Seq": int(verdict.seq),
        "TriggerId": str(trigger["id"]) if isinstance(trigger, Mapping) and "id" in trigger else "",
        "LatencyMs": round_latency(verdict.latency_ms),
    }


def model_values(model: Mapping[str, str], threshold: float) -> dict[str, Any]:
    """What judges: bundle name/version, variant, precision, threshold."""
    return {
        "Model.Name": model.get("name", ""),
        "Model.Version": str(model.get("version", "")),
        "Model.Variant": model.get("variant", ""),
        "Model.Precision": model.get("precision", ""),
        "Threshold": round_score(threshold),
    }


def status_values(state: str, reason: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """State, reason and the alarm text from the MQTT status's details (``{"alarm": true, "message": ...}``)."""
    alarms = [
        f"{key}: {value['message']}"
        for key, value in details.items()
        if isinstance(value, Mapping) and value.get("alarm") and value.get("message")
    ]
    if details.get("variant_note"):
        alarms.append(f"variant: {details['variant_note']}")
    return {"State": state, "Reason": reason, "Alarm": "; ".join(alarms)}


def stats_values(snapshot: Mapping[str, Any], errors: int) -> dict[str, Any]:
    """Rolling fps and NG rate, and the count of errors caught."""
    return {
        "Fps": float(snapshot.get("fps") or 0.0),
        "NgRate": float(snapshot.get("ng_rate") or 0.0),
        "Counters.Errors": int(errors),
    }


def trigger_outputs(part_id: str, verdict: Verdict) -> list[Any]:
    """The output arguments of ``Trigger`` in :data:`OUTPUTS` order (CaptureTime as epoch seconds)."""
    values = verdict_values(verdict)
    return [
        part_id,
        values["LastVerdict"],
        values["NG"],
        values["Score"],
        values["ScoreNorm"],
        values["Threshold"],
        values["Seq"],
        values["LatencyMs"],
        verdict.ts,
    ]
