"""Replies to commands on ``<prefix>/<station>/cmd/<name>/result`` (and, with MQTT 5, the command's Response Topic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_ad.publish.messages.base import Message

__all__ = ["InstallResult", "RecalibrateResult", "RollbackResult"]


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


class InstallResult(Message):
    """Progress and outcome of a cmd/install offer (not retained)."""

    schema_version: Literal[2] | None = Field(None, alias="schema", description="Payload schema version.")
    id: str | None = Field(description="The command's id; null when a rejected message had no signed, readable id.")
    rollout: str | None = Field(None, description="The offer's rollout, echoed.")
    state: Literal["rejected", "downloading", "verifying", "commissioning", "installed", "failed", "error"] = Field(
        description="installed: verified, commissioned and (unless the offer said otherwise) active; failed: the "
        "version was refused here (signature, self-test, acceptance) and nothing changed; error: it could not be "
        "tried (download, disk)."
    )
    ts: float = Field(description="Seconds since the Unix epoch (UTC), whole milliseconds.")
    time: str | None = Field(None, description="The same instant as ts, ISO 8601 UTC with milliseconds.")
    reason: str | None = Field(None, description="rejected, failed, error: why.")
    offered: str | None = Field(None, description="The offered version (in the publisher's store).")
    version: str | None = Field(
        None, description="installed: the version installed, the offered one (a signed version keeps its number)."
    )
    previous: str | None = Field(None, description="installed: the version that was active before.")
    active: bool | None = Field(None, description="installed: whether it is now the active version.")
    variant: str | None = Field(None, description="installed: the variant commissioning chose on this hardware.")
    selftest: bool | None = Field(None, description="installed/failed: the golden-image self-test passed.")
    acceptance: bool | None = Field(
        None, description="installed/failed: the acceptance set met the bundle's gate on this hardware."
    )


class RollbackResult(Message):
    """The outcome of a cmd/rollback command (not retained)."""

    schema_version: Literal[2] | None = Field(None, alias="schema", description="Payload schema version.")
    id: str | None = Field(description="The command's id; null when a rejected message had no signed, readable id.")
    rollout: str | None = Field(None, description="The command's rollout, echoed.")
    state: Literal["rejected", "rolled_back", "error"]
    ts: float = Field(description="Seconds since the Unix epoch (UTC), whole milliseconds.")
    time: str | None = Field(None, description="The same instant as ts, ISO 8601 UTC with milliseconds.")
    reason: str | None = Field(None, description="rejected, error: why.")
    version: str | None = Field(None, description="rolled_back: the version now active.")
    previous: str | None = Field(None, description="rolled_back: the version left.")
