"""The retained station state on ``<prefix>/<station>/status``; also the Last Will."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge_ad.publish.messages.base import Header, Message, ModelInfo

__all__ = ["Alarm", "StatusMessage"]


class Alarm(Message):
    """Present while the alarm is raised."""

    alarm: Literal[True]
    message: str


class Candidate(Message):
    """One variant measured by commissioning."""

    precision: str
    accepted: bool
    agreement: float | None
    auroc_drop: float | None
    drift_max: float | None
    p50_ms: float | None


class Commissioning(Message):
    """The commissioning decision of the running bundle version on this device (docs/commissioning.md)."""

    at: str = Field(description="When it was measured (ISO 8601 UTC).")
    context: str = Field(
        description="Who measured: first start, hot reload (timed while serving), edge-ad models commission."
    )
    chosen: str | None = Field(description="The variant model.variant: auto runs.")
    reason: str
    cpu_flags: list[str]
    plugin_default_precision: str = Field(description="What OpenVINO would have used unasked.")
    candidates: dict[str, Candidate]


class Drift(Message):
    """Present while the drift alarm is raised: good parts score close to the threshold."""

    alarm: Literal[True]
    median_ok_score: float
    limit: float = Field(description="service.drift.fraction x threshold")


class Faults(Alarm):
    """An unexpected error was caught in a thread that must not die (it went on): the last one, counts per place."""

    errors: dict[str, Annotated[int, Field(ge=1)]] = Field(description="Errors per place since the start.")


class SpoolAlarm(Alarm):
    """The spool database cannot be written (disk full, I/O error): verdicts are held in memory."""

    in_memory: int = Field(ge=0, description="Verdicts held in memory, not on disk.")
    dropped: int = Field(ge=0, description="Verdicts dropped since the start (spool bounds).")


class StatusMessage(Header):
    """The station's state, retained. The Last Will is the one status without ts and time."""

    state: Literal["online", "camera_offline", "offline", "error"]
    reason: str = Field(
        description="Why the state changed: '', 'stopped', 'source exhausted', 'connection lost' (the Will), an error."
    )
    ts: float | None = Field(
        None,
        description="When the station published it, seconds since the Unix epoch (UTC), whole milliseconds; absent "
        "in the Last Will (the broker sends it when it notices the loss, which the station cannot know).",
    )
    time: str | None = Field(None, description="The same instant as ts, ISO 8601 UTC with milliseconds.")
    model: ModelInfo | None = None
    device: str | None = None
    device_note: str | None = Field(None, description="Why the device differs from the one configured.")
    variant_note: str | None = Field(
        None, description="Alarm: why the configured model.variant does not run (commissioning refused it here)."
    )
    commissioning: Commissioning | None = None
    threshold: float | None = Field(None, description="The threshold the running variant judges with (6 decimals).")
    drift: Drift | None = None
    disk: Alarm | None = Field(
        None,
        description="Present while evidence cannot be kept as configured (disk full, below evidence.min_free_mb, "
        "write errors). Verdicts continue.",
    )
    cases: Alarm | None = Field(
        None,
        description="Present while NG frames are not being remembered in the case store (store unreachable, failing, "
        "not keeping up, or a model without embedding). Verdicts continue.",
    )
    faults: Faults | None = None
    opcua: Alarm | None = Field(
        None,
        description="Alarm: the OPC UA server (opcua.enabled) is not serving (port in use, certificate, ...) and "
        "retries by itself. Verdicts on MQTT continue.",
    )
    spool: SpoolAlarm | None = None
    signature: str | None = Field(
        None,
        description="How the running version is signed: 'signed by <signer> (key <id>)' (with 'via vN <- vM' for a "
        "station-signed recalibration and its chain), or 'not signed' (no security.trusted_keys).",
    )
