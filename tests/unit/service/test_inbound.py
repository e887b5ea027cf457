"""Inbound MQTT payloads: every input ends as a value or a ValueError, never another exception."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_ad.config import RecalibrationConfig
from edge_ad.guard import MAX_CAUSES, RateLimitedLog
from edge_ad.service.command_auth import MAX_BODY, CommandVerifier, sign_command
from edge_ad.service.inbound import MAX_DEPTH, load_json
from edge_ad.service.modes import MAX_TRIGGER_BYTES, parse_trigger
from edge_ad.service.recalibration import RecalibrationRunner

KEY = b"k" * 32

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _as_bytes(value: object) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity come out as JSON's non-standard literals


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"[" * 1024, "nested deeper than 8 levels"),  # json.loads raised RecursionError here
        (b'{"a":' * 9 + b"1" + b"}" * 9, "nested deeper than 8 levels"),
        (b"x" * (MAX_TRIGGER_BYTES + 1), "exceeds 1024"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b'{"id": NaN}', "NaN is not allowed"),
        (b'{"id": -Infinity}', "-Infinity is not allowed"),
        (b'{"id": ' + b"9" * 5000 + b"}", "exceeds 1024"),
        (b"", "not JSON"),
        (b'{"id": "a\x00b"', "not JSON"),
    ],
)
def test_hostile_payloads_are_value_errors(payload, error):
    with pytest.raises(ValueError, match=error):
        load_json(payload, MAX_TRIGGER_BYTES, "trigger payload")


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert load_json(b'{"id": "[[[[[[[[[[[[\\"{{{{{{{{{{"}', 100, "x") == {"id": '[[[[[[[[[[[["{{{{{{{{{{'}
    deepest = load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, 100, "x")  # the limit itself is allowed
    for _ in range(MAX_DEPTH - 1):
        deepest = deepest[0]
    assert deepest == []


@given(st.binary(max_size=1200))
def test_any_bytes_on_the_trigger_topic_give_an_id_or_a_value_error(payload):
    try:
        part = parse_trigger(payload)
    except ValueError:
        return
    assert 0 < len(str(part)) <= 64


@given(JSON_VALUES)
def test_any_json_on_the_trigger_topic_gives_an_id_or_a_value_error(value):
    try:
        part = parse_trigger(_as_bytes(value))
    except ValueError:
        return
    assert value == {"id": value["id"]} and part == value["id"] and type(part) is type(value["id"])


def _answered(payload: bytes) -> dict:
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=RecalibrationConfig())
    runner = RecalibrationRunner(config, CommandVerifier(KEY, 60), replies.append)  # type: ignore[arg-type]
    runner.on_message(payload)
    assert runner.accepted + runner.rejected == 1 and len(replies) == 1
    return replies[0]


@given(st.one_of(st.binary(max_size=2 * MAX_BODY + 300), JSON_VALUES.map(_as_bytes)))
def test_any_unsigned_command_is_rejected_and_counted(payload):
    assert _answered(payload)["state"] == "rejected"


@given(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6))
def test_any_signed_command_is_answered_and_counted(body):
    reply = _answered(sign_command(body, KEY))
    assert reply["state"] in ("rejected", "collecting")


def test_rejections_are_logged_once_per_cause_per_interval(caplog):
    log = RateLimitedLog(logging.getLogger("test.inbound"), interval_s=60)
    with caplog.at_level(logging.WARNING, logger="test.inbound"):
        for size in (5000, 6000, 7000):  # one cause: numbers are folded
            log.warning(f"payload of {size} bytes exceeds 1024", "rejected: %s", size)
        log.warning("not JSON", "rejected: %s", "garbage")
    assert [r.getMessage() for r in caplog.records] == ["rejected: 5000", "rejected: garbage"]
    log.interval_s = 0
    with caplog.at_level(logging.WARNING, logger="test.inbound"):
        log.warning("payload of 1 bytes exceeds 1024", "rejected: %s", 1)
    assert caplog.records[-1].getMessage() == "rejected: 1 (2 more like it in the last 0 s not logged)"


def test_sender_chosen_names_do_not_make_new_causes(caplog):
    """Found by the probe: 3 000 triggers with a different unknown field name each gave 2 517 log lines (the
    field name fell inside the 40 characters a cause is folded to) and grew the table of causes without bound."""
    log = RateLimitedLog(logging.getLogger("test.inbound"), interval_s=60)
    with caplog.at_level(logging.WARNING, logger="test.inbound"):
        for i in range(3000):
            log.warning(f"trigger payload has unknown field(s) ['{chr(0x4E00 + i)}']", "rejected: %s", i)
        for i in range(1000):  # causes that differ in their words, not their quotes: the table stays bounded
            log.warning(f"{chr(0x4E00 + i)} is not a field", "rejected: %s", i)
    assert len(caplog.records) <= 1 + MAX_CAUSES and len(log._last) <= MAX_CAUSES
    assert caplog.records[0].getMessage() == "rejected: 0"
