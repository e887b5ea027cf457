from __future__ import annotations

import re
import time
from pathlib import Path
from typing import get_args

import pytest

from edge_ad.opcua import nodes
from edge_ad.service.modes import Outcome
from edge_ad.types import Verdict

DOCS = Path(__file__).resolve().parents[3] / "docs" / "integration.md"


def verdict(**extra) -> Verdict:
    return Verdict(seq=7, ts=time.time(), verdict="NG", score=39.0, threshold=26.0,
                   model={"name": "brick"}, latency_ms=4.5, frame_index=7, extra=extra)  # fmt: skip


def test_a_verdict_gives_every_verdict_variable():
    values = nodes.verdict_values(verdict(trigger={"id": "P-1"}))
    assert values == {"LastVerdict": "NG", "NG": True, "Score": 39.0, "ScoreNorm": 0.75, "Threshold": 26.0,
                      "Seq": 7, "TriggerId": "P-1", "LatencyMs": 4.5}  # fmt: skip
    assert nodes.verdict_values(verdict())["TriggerId"] == ""
    assert set(values) | set(nodes.model_values({}, 1.0)) <= {v.name for v in nodes.VARIABLES}
    outputs = nodes.trigger_outputs("P-1", verdict())
    assert len(outputs) == len(nodes.OUTPUTS) and outputs[:3] == ["P-1", "NG", True]


def test_alarm_text_gathers_every_alarm_detail():
    details = {"disk": {"alarm": True, "message": "disk full"}, "faults": None, "model": {"name": "x"},
               "variant_note": "int8 refused"}  # fmt: skip
    assert nodes.status_values("online", "", details)["Alarm"] == "disk: disk full; variant: int8 refused"
    assert nodes.status_values("online", "", {})["Alarm"] == ""


def test_every_refusal_has_an_opc_ua_bad_code():
    ua = pytest.importorskip("asyncua").ua
    assert set(nodes.REFUSALS) == set(get_args(Outcome))
    for name in nodes.REFUSALS.values():
        assert name.startswith("Bad") and hasattr(ua.StatusCodes, name)


def test_every_node_id_and_argument_is_documented():
    text = DOCS.read_text()
    documented = set(re.findall(r"`ns=2;s=([A-Za-z.]+)`", text))
    expected = {nodes.node_id(), nodes.node_id(nodes.TRIGGER)} | {nodes.node_id(v.name) for v in nodes.VARIABLES}
    assert expected <= documented, f"not in docs/integration.md: {sorted(expected - documented)}"
    assert documented <= expected | {nodes.node_id(f) for f in nodes.FOLDERS}, "documented but not served"
    signature = ", ".join(f"{name}: {type_}" for name, type_, _ in nodes.OUTPUTS)
    assert f"`Trigger(Id: String) -> ({signature})`" in text
    for code in set(nodes.REFUSALS.values()):
        assert f"`{code}`" in text
