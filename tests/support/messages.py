"""Check a real message against its shipped JSON Schema and its model: valid, and every field documented."""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import BaseModel

from edge_ad.publish import load_schema
from edge_ad.publish.messages import adapter

__all__ = ["check_message", "undocumented"]


def undocumented(value: Any, path: str = "") -> list[str]:
    """Fields of a parsed message no model declares (the schemas allow them; the station's own must have none)."""
    if isinstance(value, BaseModel):
        found = [f"{path}.{name}" for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += undocumented(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, dict):
        return [f for key, item in value.items() for f in undocumented(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [f for i, item in enumerate(value) for f in undocumented(item, f"{path}[{i}]")]
    return []


def check_message(kind: str, payload: dict) -> None:
    """``payload`` validates against ``<kind>.schema.json`` and carries only fields its model documents."""
    jsonschema.validate(payload, load_schema(kind))
    extra = undocumented(adapter(kind).validate_python(payload))
    assert not extra, f"{kind} message has undocumented fields {extra}: {payload}"
