"""Markdown reference of every config key, generated from the pydantic schema."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from edge_ad.config.schema import EdgeAdConfig

__all__ = ["render_reference"]

HEADER = """# Configuration reference

Generated from `edge_ad/config/` by `edge-ad config reference`; a test fails when this file and
the schema disagree. Unknown keys are errors. Relative paths are resolved against the directory of
the config file. Print the JSON Schema with `edge-ad config schema`.
"""


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " / ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        return "list of " + " or ".join(_type_name(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation)).replace("Path", "path")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section)" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    value = field.default
    return f"`{json.dumps(value if not hasattr(value, '__fspath__') else str(value))}`"


def _constraint(meta: Any) -> str:
    values = (
        {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
        if dataclasses.is_dataclass(meta)
        else vars(meta)
    )
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return ", ".join(f"{symbols.get(k, k.replace('_', ' '))} {v}" for k, v in values.items() if v is not None)


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, key + ".")
            continue
        section = next((a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        bounds = [_constraint(m) for m in field.metadata]
        description = field.description or ""
        if bounds:
            description += f" ({', '.join(bounds)})"
        cells = [f"`{key}`", _type_name(annotation), _default(field), description]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if section is not None:  # an optional section or a list of them: document its keys too
            rows += _rows(section, key + ("[]." if get_origin(annotation) is list else "."))
    return rows


def render_reference() -> str:
    """The configuration reference as Markdown."""
    table = ["| key | type | default | description |", "| --- | --- | --- | --- |", *_rows(EdgeAdConfig)]
    lines = [HEADER, *table]
    return "\n".join(lines) + "\n"
