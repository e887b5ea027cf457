"""Messages the station receives, validated strictly: unknown fields, loose types and oversized input are refused.

Strictness here is a security property, not pedantry: a field the station ignored but a reader of the
same message obeyed (or the reverse) would let one message mean two things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, Strict, StrictBool, StrictInt, StrictStr

from edge_ad.config.base import EdgeAdModel

__all__ = [
    "MAX_BODY",
    "MAX_FRAMES",
    "NONCE_PATTERN",
    "CommandEnvelope",
    "InstallBody",
    "InstallCommand",
    "RecalibrateBody",
    "RecalibrateCommand",
    "RollbackBody",
    "RollbackCommand",
    "TriggerMessage",
]

MAX_BODY = 2048  # bytes of a command body
MAX_FRAMES = 2000  # frames a command may hold in memory
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
COMMAND_ID = r"^[A-Za-z0-9_.:-]+$"
MAX_PACKAGE = 8 * 2**30  # bytes of a bundle package an install offer may announce
VERSION = r"^[1-9][0-9]{0,8}$"

TriggerId = (
    Annotated[StrictStr, Field(min_length=1, max_length=64)] | Annotated[StrictInt, Field(gt=-(10**63), lt=10**64)]
)


class TriggerMessage(EdgeAdModel):
    """PLC -> station on <prefix>/<station>/trigger (QoS 1, not retained): judge the first frame captured after it.

    At most 1 KiB of UTF-8 JSON, nested at most 8 levels, no NaN/Infinity, no duplicate keys. Answered on the
    verdict topic with a verdict or an ERROR carrying this id (and, with MQTT 5, on the message's Response Topic).
    """

    id: TriggerId = Field(
        description="The part's id: a string of 1-64 characters or an integer of at most 64 characters (not a "
        "boolean, not 1.0); echoed with its JSON type."
    )


class CommandEnvelope(EdgeAdModel):
    """Operator -> station on <prefix>/<station>/cmd/<name>: the command's JSON text and its signature."""

    body: str = Field(max_length=MAX_BODY, description="The command as JSON text (see its own schema).")
    hmac: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="HMAC-SHA256 of body's UTF-8 bytes with the station's key, lowercase hex.",
    )


class RecalibrateCommand(EdgeAdModel):
    """The body of cmd/recalibrate (JSON types only: "no" is not false); signed with ts and nonce beside it."""

    id: StrictStr = Field(min_length=1, max_length=64, pattern=COMMAND_ID)
    frames: StrictInt | None = Field(
        None, ge=8, le=MAX_FRAMES, description="Good frames to collect; default: what acceptance needs for the target."
    )
    interval_s: Annotated[float, Strict()] = Field(0.2, ge=0, le=60, description="Seconds between collected frames.")
    refit_memory: StrictBool = False
    dry_run: StrictBool = False
    activate: StrictBool = Field(
        True,
        description="false: install a passing version without making it active (activate it later, e.g. from the "
        "console or with edge-ad models activate).",
    )
    defects_dir: Path | None = Field(
        None, description="Folder of defect images under recalibration.defects_root (recall check)."
    )


class Sent(EdgeAdModel):
    """What every signed command body carries besides the command: its send time and a nonce (never reused)."""

    ts: Annotated[float, Strict()] = Field(
        gt=-1e11, lt=1e11, description="Unix seconds when sent; within commands.max_age_s of the station's clock."
    )
    nonce: StrictStr = Field(pattern=NONCE_PATTERN, description="New for every command.")


class RecalibrateBody(RecalibrateCommand, Sent):
    """The body of cmd/recalibrate as signed and sent: the command plus its send time and a nonce (never reused)."""


class InstallCommand(EdgeAdModel):
    """The body of cmd/install: install one signed bundle version from a file server, then activate it.

    The station downloads ``url`` (at most ``size`` bytes), checks the manifest's SHA-256, the files and the
    signature against its trusted keys, commissions the version on its own hardware (self-test and
    acceptance) and only then activates it; every step is a reply on cmd/install/result.
    """

    id: StrictStr = Field(min_length=1, max_length=64, pattern=COMMAND_ID)
    rollout: StrictStr | None = Field(
        None, min_length=1, max_length=64, pattern=COMMAND_ID, description="The rollout this offer is part of."
    )
    bundle: StrictStr = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The model's name (manifest name): must be the station's model (model.path's model directory).",
    )
    version: StrictStr = Field(
        pattern=VERSION,
        description="The bundle's version (its signed manifest's): the station installs it under this number.",
    )
    manifest_sha256: StrictStr = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the package's manifest.json bytes, lowercase hex."
    )
    url: StrictStr = Field(
        max_length=1024, pattern=r"^https?://[^\s]+$", description="The package (edge-ad models pack): http or https."
    )
    size: StrictInt = Field(gt=0, le=MAX_PACKAGE, description="The package's size in bytes; a longer download stops.")
    activate: StrictBool = Field(True, description="false: install and commission only; activate later.")


class InstallBody(InstallCommand, Sent):
    """The body of cmd/install as signed and sent."""


class RollbackCommand(EdgeAdModel):
    """The body of cmd/rollback: leave ``from_version`` for the version a rollback goes to (edge-ad models rollback).

    Refused when ``from_version`` is not the active version any more (a stale or repeated command).
    """

    id: StrictStr = Field(min_length=1, max_length=64, pattern=COMMAND_ID)
    rollout: StrictStr | None = Field(None, min_length=1, max_length=64, pattern=COMMAND_ID)
    from_version: StrictStr = Field(pattern=VERSION, description="The active version this rollback leaves.")


class RollbackBody(RollbackCommand, Sent):
    """The body of cmd/rollback as signed and sent."""
