"""Replies to commands on ``<prefix>/<station>/cmd/<name>/result`` (and, with MQTT 5, the command's Response Topic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_ad.publish.messages.base import Message

__all__ = ["RecalibrateResult"]


class OldNew(Message):
    """A figure before and after the recalibration (null when not measured)."""

    old: float | None
    new: float | None


class RecalibrateResult(Message):
    """Progress and outcome of a cmd/recalibrate command (not retained)."""

    schema_version: Literal[2] | None = Field(None, alias="schema", description="Payload schema version.")
    id: str | None = Field(description="The command's id; null when a rejected message had no signed, readable id.")
    state: Literal["rejected", "collecting", "fitting", "passed", "failed", "error"]
    ts: float = Field(description="Seconds since the Unix epoch (UTC), whole milliseconds.")
    time: str | None = Field(None, description="The same instant as ts, ISO 8601 UTC with milliseconds.")
    frames: int | None = Field(None, ge=1, description="collecting, fitting: frames to collect (collected).")
    collected: int | None = Field(
        None, ge=0, description="collecting: frames collected so far (sent at most twice a second)."
    )
    reason: str | None = Field(None, description="rejected, error, failed: why; passed: notes.")
    dry_run: bool | None = None
    threshold: OldNew | None = Field(None, description="passed/failed: the threshold (6 decimal places).")
    false_reject: OldNew | None = None
    recall: OldNew | None = None
    histogram: str | None = Field(
        None,
        description="passed/failed: file name of the score histogram PNG in the station's "
        "<state_dir>/recalibration folder.",
    )
    active: bool | None = Field(
        None, description="passed: whether the installed version was made active (false when the command said so)."
    )
    version: str | None = Field(
        default_factory=lambda: None,  # a factory: optional, and null when present (nothing was installed)
        description="passed/failed: the version installed, null when nothing was (dry run, failed).",
    )
