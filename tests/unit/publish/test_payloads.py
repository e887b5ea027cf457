from __future__ import annotations

import json
from datetime import datetime

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_ad.publish import Topics, load_schema, status_payload, verdict_payload
from edge_ad.publish.payloads import (
    mark_replayed,
    stamp,
    stats_payload,
    to_json,
    trigger_error_payload,
    will_payload,
)
from edge_ad.types import Verdict, round_score
from tests.support.messages import check_message

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
RUN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_topics_are_built_in_one_place():
    t = Topics(station="line3-cam1", prefix="plant1")
    assert (t.status(), t.verdict(), t.stats(), t.trigger()) == (
        "plant1/line3-cam1/status",
        "plant1/line3-cam1/verdict",
        "plant1/line3-cam1/stats",
        "plant1/line3-cam1/trigger",
    )
    assert t.is_own("plant1/line3-cam1/status") and t.is_own("plant1/line3-cam1/cmd/recalibrate/result")
    assert not t.is_own("plant1/line3-cam1/reply/plc") and not t.is_own("plant1/other/status")


def test_verdict_payload_matches_schema():
    payload = json.loads(to_json(verdict_payload(VERDICT, "line3-cam1", RUN)))
    check_message("verdict", payload)
    assert payload["time"] == "2026-01-01T00:00:00.250Z" and payload["ts"] == 1767225600.25
    assert payload["model"] == {"name": "brick", "version": "3", "variant": "bf16", "precision": "bf16"}
    assert (payload["seq"], payload["verdict"], payload["schema"], payload["run"]) == (7, "NG", 2, RUN)
    assert payload["score_norm"] == 0.875 and "replayed" not in payload  # 0.5 * 3.5 / 2.0


@pytest.mark.parametrize(
    ("score", "threshold", "norm"),
    [
        (2.0, 2.0, 0.5),  # at the threshold: 0.5, NG
        (1.999999, 2.0, 0.499999),  # OK: 0.49999975 would round to 0.5 (NG); shown one step below
        (0.0, 2.0, 0.0),
        (10.0, 2.0, 1.0),  # clipped
        (-1.0, 2.0, 0.0),
    ],
)
def test_score_norm_is_one_half_at_the_threshold(score, threshold, norm):
    verdict = Verdict(**{**VERDICT.__dict__, "score": score, "threshold": threshold})
    assert verdict_payload(verdict, "s1")["score_norm"] == norm


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_ts_and_time_come_from_one_whole_millisecond(ts):
    """Found by the integrator: ts was rounded and time truncated, so they could differ by 1 ms."""
    stamped = stamp(ts)
    ms = round(stamped["ts"] * 1000)
    assert abs(ms - ts * 1000) <= 0.5 + 1e-3
    parsed = datetime.fromisoformat(stamped["time"].replace("Z", "+00:00"))
    assert round(parsed.timestamp() * 1000) == ms
    assert stamped["time"].endswith("Z") and len(stamped["time"]) == len("2026-01-01T00:00:00.250Z")


def test_scores_and_thresholds_are_rounded_alike_on_every_topic():
    """Found by the integrator: status carried the raw float32 threshold, verdicts a rounded one."""
    from edge_ad.service.stats import DriftMonitor

    threshold = 26.470001525878906  # a float32 threshold, as the manifest gives it
    verdict = verdict_payload(Verdict(**{**VERDICT.__dict__, "threshold": threshold}), "s1")
    status = status_payload("s1", "online", threshold=threshold)
    drift = DriftMonitor(window=5, fraction=0.8)
    for _ in range(5):
        drift.update(26.4, True, threshold)
    assert verdict["threshold"] == status["threshold"] == round_score(threshold) == 26.470002
    assert drift.status(threshold)["limit"] == round_score(0.8 * threshold)


def test_status_stats_and_trigger_errors_match_their_schemas():
    model = {"name": "m", "version": "1", "variant": "int8", "precision": "f32"}
    for payload in (
        status_payload("s1", "online", run=RUN, model=model, device="CPU", threshold=1.0),
        status_payload("s1", "offline", "stopped", run=RUN),
        status_payload("s1", "error", "CameraError: gone", device_note=None),  # None details are dropped
        will_payload("s1", RUN),
    ):
        check_message("status", json.loads(to_json(payload)))
    stats = {"frames": 3, "ng": 1, "fps": 9.9, "latency_ms": {"p50": 1.0, "p99": 2.0}, "ng_rate": 0.3,
             "uptime_s": 1.0, "dropped_frames": 0, "camera": "online", "device": "CPU", "model": model,
             "spooled": 0}  # fmt: skip
    check_message("stats", json.loads(to_json(stats_payload("s1", stats, run=RUN))))
    error = trigger_error_payload("s1", RUN, 4711, "expired", "expired: no frame within 5.0 s of it")
    check_message("verdict", json.loads(to_json(error)))
    assert error["trigger"] == {"id": 4711} and "seq" not in error


def test_the_will_says_connection_lost_without_a_time():
    """Found by the integrator: the Will's ts was the connect time, hours before the loss."""
    assert will_payload("s1", RUN) == {
        "schema": 2,
        "station": "s1",
        "run": RUN,
        "state": "offline",
        "reason": "connection lost",
    }


def test_a_replayed_message_says_so():
    live = to_json(verdict_payload(VERDICT, "s1", RUN))
    replayed = json.loads(mark_replayed(live))
    assert replayed == {**json.loads(live), "replayed": True}
    check_message("verdict", replayed)
    assert mark_replayed(b"not json") == b"not json"


@pytest.mark.parametrize(
    ("field", "value"),
    [("verdict", "MAYBE"), ("seq", 0), ("schema", 1), ("score_norm", 1.5), ("trigger", {"id": True})],
)
def test_schema_rejects_malformed_verdicts(field, value):
    payload = verdict_payload(VERDICT, "s1")
    payload[field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, load_schema("verdict"))


def test_consumers_get_schemas_that_allow_fields_added_later():
    """Versioning policy: fields are added within a schema version, so the shipped schemas allow unknown ones."""
    for kind, payload in (
        ("verdict", verdict_payload(VERDICT, "s1")),
        ("status", will_payload("s1")),
    ):
        jsonschema.validate({**payload, "added_in_a_later_release": {"x": 1}}, load_schema(kind))


def test_nan_score_is_never_serialised():
    bad = Verdict(**{**VERDICT.__dict__, "score": float("nan")})
    with pytest.raises(ValueError):
        to_json(verdict_payload(bad, "s1"))
