"""The shipped JSON Schemas are generated from the message models and say what the station really accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_ad.publish import load_schema
from edge_ad.publish.messages import MESSAGES, TriggerMessage
from edge_ad.publish.messages.schema_files import render, schema_dir
from edge_ad.service.command_auth import sign_command
from edge_ad.service.modes import BadTrigger, parse_trigger
from tests.support.messages import check_message

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "x", "ID"]), inner, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_shipped_schemas_are_the_generated_ones(name):
    """One concept, one home: edit the model, then run python -m edge_ad.publish.messages.schema_files."""
    assert (schema_dir() / f"{name}.schema.json").read_text() == render(name), f"regenerate {name}.schema.json"


def test_no_schema_ships_without_a_model():
    assert sorted(p.name for p in schema_dir().glob("*.json")) == sorted(f"{n}.schema.json" for n in MESSAGES)


@pytest.mark.parametrize(
    ("name", "strict"),
    [("verdict", False), ("status", False), ("stats", False), ("recalibrate-result", False),
     ("trigger", True), ("command", True), ("recalibrate", True)],
)  # fmt: skip
def test_outbound_schemas_allow_new_fields_inbound_ones_refuse_them(name, strict):
    """Consumers must ignore fields they do not know; the station itself refuses them (a security property)."""

    def objects(schema):
        if isinstance(schema, dict):
            if schema.get("type") == "object" and "properties" in schema:
                yield schema
            for value in schema.values():
                yield from objects(value)
        elif isinstance(schema, list):
            for value in schema:
                yield from objects(value)

    found = list(objects(load_schema(name)))
    assert found and all(o.get("additionalProperties") is (not strict) for o in found)


def _station_accepts(value: object) -> object:
    try:
        return ("ok", parse_trigger(json.dumps(value).encode()))
    except BadTrigger:
        return ("refused",)


@given(JSON_VALUES | st.fixed_dictionaries({"id": JSON_VALUES}))
def test_the_trigger_schema_says_exactly_what_the_station_accepts(value):
    station = _station_accepts(value)
    try:
        model = ("ok", TriggerMessage.model_validate(value).id)
    except ValidationError:
        model = ("refused",)
    assert station == model
    if station[0] == "ok":
        assert type(station[1]) is type(value["id"])  # 4711 stays a number, "4711" a string
    integral_float = isinstance(value, dict) and isinstance(value.get("id"), float) and value["id"].is_integer()
    if not integral_float:  # JSON Schema counts 1.0 as an integer; the station does not
        valid = jsonschema.Draft202012Validator(load_schema("trigger")).is_valid(value)
        assert valid == (station[0] == "ok")


@pytest.mark.parametrize(
    "value",
    [{"id": 10**64 - 1}, {"id": 10**64}, {"id": -(10**63) + 1}, {"id": -(10**63)}, {"id": "x" * 64},
     {"id": "x" * 65}, {"id": ""}, {"id": 0}, {"id": True}, {"id": "P-1", "ts": 1}, {"ID": "P-1"}],
)  # fmt: skip
def test_the_trigger_schema_and_the_station_agree_at_the_edges(value):
    accepted = _station_accepts(value)[0] == "ok"
    assert jsonschema.Draft202012Validator(load_schema("trigger")).is_valid(value) == accepted
    part = value.get("id", "")
    assert accepted == (0 < len(str(part)) <= 64 and set(value) == {"id"} and part is not True)


def test_a_signed_command_is_what_the_command_schemas_describe():
    payload = json.loads(sign_command({"id": "r1", "frames": 40, "dry_run": True}, b"k" * 32))
    check_message("command", payload)
    body = json.loads(payload["body"])
    jsonschema.validate(body, load_schema("recalibrate"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "dry_run": "no"}, load_schema("recalibrate"))
