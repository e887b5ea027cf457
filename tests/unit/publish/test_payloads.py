from __future__ import annotations

import json

import jsonschema
import pytest

from edge_ad.publish import Topics, load_schema, status_payload, verdict_payload
from edge_ad.publish.payloads import to_json
from edge_ad.types import Verdict

VERDICT = Verdict(
    seq=7,
    ts=1767225600.25,
    verdict="NG",
    score=3.5,
    threshold=2.0,
    model={"name": "brick", "version": "3", "variant": "bf16", "precision": "bf16"},
    latency_ms=4.2,
    frame_index=9,
    origin="009.png",
)


def test_topics_are_built_in_one_place():
    t = Topics(station="line3-cam1", prefix="plant1")
    assert (t.status(), t.verdict(), t.stats(), t.trigger()) == (
        "plant1/line3-cam1/status",
        "plant1/line3-cam1/verdict",
        "plant1/line3-cam1/stats",
        "plant1/line3-cam1/trigger",
    )


def test_verdict_payload_matches_schema():
    payload = json.loads(to_json(verdict_payload(VERDICT, "line3-cam1")))
    jsonschema.validate(payload, load_schema("verdict"))
    assert payload["time"] == "2026-01-01T00:00:00.250Z"
    assert payload["model"] == {"name": "brick", "version": "3", "variant": "bf16", "precision": "bf16"}
    assert (payload["seq"], payload["verdict"], payload["schema"]) == (7, "NG", 1)


@pytest.mark.parametrize(
    "payload",
    [
        status_payload(
            "s1",
            "online",
            model={"name": "m", "version": "1", "variant": "int8", "precision": "f32"},
            device="CPU",
            threshold=1.0,
        ),
        status_payload("s1", "offline", "stopped"),
        status_payload("s1", "offline", "connection lost"),
        status_payload("s1", "error", "CameraError: gone", device_note=None),  # None details are dropped
    ],
)
def test_status_payloads_match_schema(payload):
    jsonschema.validate(json.loads(to_json(payload)), load_schema("status"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("verdict", "MAYBE"), ("seq", 0), ("schema", 2), ("unexpected", 1)],
)
def test_schema_rejects_malformed_verdicts(field, value):
    payload = verdict_payload(VERDICT, "s1")
    payload[field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, load_schema("verdict"))


def test_nan_score_is_never_serialised():
    bad = Verdict(**{**VERDICT.__dict__, "score": float("nan")})
    with pytest.raises(ValueError):
        to_json(verdict_payload(bad, "s1"))
