"""The station's Sparkplug metrics: unique names and aliases, values from a verdict."""

from __future__ import annotations

from edge_ad.publish.sparkplug.metrics import BDSEQ, DEVICE_METRICS, REBIRTH, DataType, verdict_values
from edge_ad.types import Verdict, score_norm

MODEL = {"name": "brick", "version": "2", "variant": "int8", "precision": "f32"}


def test_names_and_aliases_are_unique_and_node_control_has_no_alias():
    names = [m.name.lower() for m in (BDSEQ, REBIRTH, *DEVICE_METRICS)]
    assert len(set(names)) == len(names)  # the spec: no two names equal when lower-cased
    aliases = [m.alias for m in DEVICE_METRICS]
    assert None not in aliases and len(set(aliases)) == len(aliases)
    assert aliases == list(range(1, len(aliases) + 1))  # only ever append: hosts may keep aliases
    assert REBIRTH.alias is None and REBIRTH.datatype is DataType.Boolean and BDSEQ.datatype is DataType.Int64


def test_a_verdict_gives_every_inspection_and_model_metric():
    verdict = Verdict(seq=42, ts=1.0, verdict="NG", score=40.46, threshold=26.47, model=MODEL, latency_ms=7.74,
                      frame_index=42)  # fmt: skip
    values = verdict_values(verdict)
    assert values == {
        "Inspection/NG": True,
        "Inspection/Score": 40.46,
        "Inspection/Score Normalised": round(score_norm(40.46, 26.47), 6),  # the JSON topics' number
        "Inspection/Threshold": 26.47,
        "Inspection/Seq": 42,
        "Inspection/Latency ms": 7.74,
        "Model/Name": "brick",
        "Model/Version": "2",
        "Model/Variant": "int8",
        "Model/Precision": "f32",
    }
    assert {m.name for m in DEVICE_METRICS} - set(values) == {"Camera/State", "Stats/FPS", "Stats/NG Rate"}
