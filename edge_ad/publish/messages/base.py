"""What every message model shares: the header, the model block, and the rule for extra fields.

Messages the station publishes accept fields they do not know (consumers must ignore them: fields are
added within a ``schema`` version). Messages it receives are validated strictly: an unknown field is
an error there, because a field one reader ignores and another obeys would make a command mean two
things (docs/mqtt.md#versioning).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SCHEMA_VERSION", "Header", "Message", "ModelInfo"]

SCHEMA_VERSION = 2  # of every message the station publishes; 1 -> 2: docs/mqtt.md#versions


class Message(BaseModel):
    """A message the station publishes (unknown fields allowed: consumers ignore what they do not know)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Header(Message):
    """Fields every station message starts with."""

    schema_version: Literal[2] = Field(alias="schema", description="Payload schema version (docs/mqtt.md#versioning).")
    station: str = Field(min_length=1, description="The station's name (second topic level).")
    run: str | None = Field(
        None,
        description="Id of the daemon run that published it, new at every start (status: birth and death of one run).",
    )


class ModelInfo(Message):
    """What judged: bundle name and version, the variant that ran and the precision its float layers ran in."""

    name: str
    version: str
    variant: Literal["fp32", "int8", "bf16", "f16"] = Field(
        description="Run variant (model.variant, resolved by commissioning)."
    )
    precision: Literal["f32", "bf16", "f16"] = Field(
        description="INFERENCE_PRECISION_HINT read back from the compiled model."
    )
