"""The JSON Schemas of every message, from the models: ``python -m edge_ad.publish.messages.schema_files``.

The files ship in ``edge_ad/publish/schemas/``; a test fails when they differ from what this generates.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from edge_ad.publish.messages import MESSAGES, VERDICT_TOPIC

__all__ = ["json_schema", "render", "schema_dir", "write"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    """pydantic's generator, minus auto-generated field titles, with optional fields never null.

    A field that defaults to None is absent when it has no value (the payload builders drop None), so its
    schema is the value's own; a field that may really be null says so without a default.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        inner = schema["schema"]
        if "default" in schema and schema["default"] is None and inner["type"] == "nullable":
            return self.generate_inner(inner["schema"])
        return super().default_schema(schema)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the message behind ``<name>.schema.json``."""
    kind, title = MESSAGES[name]
    generated = TypeAdapter(kind).json_schema(by_alias=True, schema_generator=_Generator)
    generated.pop("title", None)
    if name == "verdict":  # a union: no docstring of its own
        generated["description"] = VERDICT_TOPIC
    return {"$schema": DIALECT, "$id": f"edge_ad/{name}.schema.json", "title": title, **generated}


def render(name: str) -> str:
    """The text of ``<name>.schema.json``."""
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"


def schema_dir() -> Path:
    """The schemas folder of the installed package (a source checkout: the repository's)."""
    return Path(str(resources.files("edge_ad.publish").joinpath("schemas")))


def write(folder: Path | None = None) -> list[Path]:
    """Write every schema file into ``folder`` (default: the package's); returns the files written."""
    folder = folder or schema_dir()
    written = []
    for name in MESSAGES:
        path = folder / f"{name}.schema.json"
        path.write_text(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(path)
