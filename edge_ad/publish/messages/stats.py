"""Retained statistics on ``<prefix>/<station>/stats``: current only together with the status of the same run."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge_ad.publish.messages.base import Header, Message, ModelInfo

__all__ = ["StatsMessage"]

Count = Annotated[int, Field(ge=0)]


class Latency(Message):
    """Latency percentiles over the recent window (ms)."""

    p50: float
    p99: float


class Triggers(Message):
    """Triggered mode only: trigger messages since the start."""

    accepted: Count = Field(description="Queued to wait for a frame (MQTT and OPC UA).")
    rejected: Count = Field(
        description="MQTT triggers refused on arrival (malformed, invalid id, unknown fields, camera offline, "
        "stopping), and OPC UA calls with an invalid id."
    )
    dropped: Count | None = Field(None, description="Dropped unanswered: more than 64 triggers were waiting.")
    expired: Count | None = Field(
        None,
        description="Expired: no frame captured within service.trigger_timeout_s of the trigger, or it waited at "
        "the broker longer than that while the station was away.",
    )


class CameraCounters(Message):
    """GenICam cameras: the acquisition statistics of the current connection (Aravis stream)."""

    incomplete_frames: Count = Field(description="Frames that arrived incomplete or unreadable: dropped, never judged.")
    lost_triggers: Count | None = Field(
        None, description="Software triggers whose frame did not come within frame_timeout_s, or came incomplete."
    )
    missing_frames: Count | None = Field(None, description="Frames the camera sent that never arrived.")
    underruns: Count | None = Field(None, description="Frames the camera sent while no buffer was free (buffers).")
    missing_packets: Count | None = Field(None, description="GigE: stream packets lost (before resends).")
    resend_requests: Count | None = Field(None, description="GigE: packet resends requested from the camera.")
    resent_packets: Count | None = Field(None, description="GigE: packets recovered by a resend.")


class Evidence(Message):
    """Evidence files."""

    errors: Count = Field(description="Evidence writes that failed (disk full, permissions); verdicts continued.")
    pruned: Count
    skipped: Count = Field(
        description="NG frames whose evidence was not kept because less than evidence.min_free_mb was free."
    )


class Commands(Message):
    """Signed commands: cmd/recalibrate (recalibration.mqtt_command), cmd/install and cmd/rollback (fleet)."""

    accepted: Count
    rejected: Count = Field(
        description="Malformed, oversized, unsigned or unknown-field commands, or commands while one is running."
    )


class Cases(Message):
    """With cases.enabled: case store counters since start."""

    stored: Count = Field(description="Cases written.")
    errors: Count = Field(description="Store operations that failed (store down, disk full); verdicts continued.")
    dropped: Count = Field(description="Cases not stored because the store was not keeping up.")
    expired: Count = Field(
        description="Unlabelled cases removed by retention (cases.max_cases, cases.max_age_days); labelled cases are "
        "kept."
    )
    hints: Count = Field(description="Verdicts that carried a label hint.")


class SpoolCounters(Message):
    """Verdicts held in memory because the database cannot be written, and verdicts dropped by the spool bounds."""

    in_memory: Count
    dropped: Count


class CompileCache(Message):
    """OpenVINO's compiled-blob cache: blobs dropped (and recompiled from the signed IR) for a wrong sha256."""

    discarded: Count


class Sparkplug(Message):
    """With sparkplug.enabled: the Sparkplug B session (docs/integration.md)."""

    online: bool = Field(description="Connected, and NBIRTH + DBIRTH sent in this session.")
    bdseq: Annotated[int, Field(ge=0, le=255)] | None = Field(
        description="bdSeq of the latest CONNECT (null before the first attempt)."
    )
    births: Count = Field(description="NBIRTH + DBIRTH pairs sent (every connect and every rebirth request).")
    messages: Count = Field(description="Sparkplug messages handed to the broker connection.")
    dropped: Count = Field(description="Updates dropped because the Sparkplug thread did not keep up.")
    rejected: Count = Field(description="NCMD messages refused (not Sparkplug, not a rebirth request, retained).")


class OpcUa(Message):
    """With opcua.enabled: the OPC UA server (docs/integration.md)."""

    listening: bool = Field(description="The server is up on opcua.endpoint.")
    sessions: Count = Field(description="Client connections now.")
    calls: Count = Field(description="Trigger calls since the start.")
    answered: Count = Field(description="Trigger calls answered with a verdict.")
    refused: Count = Field(
        description="Trigger calls answered with a Bad status (refused, dropped, timed out; see "
        "Station.LastTriggerError)."
    )
    logins_refused: Count = Field(description="Sessions refused for an unknown user name or a wrong password.")


class StatsMessage(Header):
    """Retained statistics, every service.stats_interval_s and at shutdown.

    They describe the run in ``run``; they are current only while they are not ``stale`` and the retained
    status of the same run says online or camera_offline (after a stop they are that run's last figures,
    marked stale; after a kill MQTT 5 brokers drop them, MQTT 3.1.1 ones keep them).
    """

    ts: float = Field(description="When they were taken, seconds since the Unix epoch (UTC), whole milliseconds.")
    time: str | None = Field(None, description="The same instant as ts, ISO 8601 UTC with milliseconds.")
    frames: Count = Field(description="Frames scored since start.")
    ng: Count = Field(description="NG verdicts since start.")
    fps: float = Field(ge=0, description="Scored frames per second over the recent window.")
    latency_ms: Latency
    ng_rate: float = Field(ge=0, le=1, description="Share of NG over the recent window.")
    uptime_s: float = Field(ge=0)
    stale: bool | None = Field(
        None,
        description="true on a run's last stats, published as it stops: figures that will not be refreshed. "
        "Absent while the run refreshes them (MQTT 5: they then carry a Message Expiry Interval of 3 stats periods).",
    )
    dropped_frames: Count = Field(description="Live frames replaced before they could be scored.")
    bad_frames: Count | None = Field(
        None, description="Frames the camera delivered that could not be decoded (skipped, counted)."
    )
    camera: Literal["online", "offline"]
    camera_counters: CameraCounters | None = Field(
        None, description="GenICam cameras: acquisition statistics since the camera was (re)opened."
    )
    device: str
    model: ModelInfo
    spooled: Count = Field(description="Verdicts waiting for the broker's acknowledgement.")
    mqtt_protocol: Literal["3.1.1", "5"] | None = Field(
        None,
        description="The MQTT version of the station's connection (mqtt.protocol auto: 5 unless the broker "
        "refused it). Response topics and the stats' expiry need 5.",
    )
    triggers: Triggers | None = None
    evidence: Evidence | None = None
    commands: Commands | None = None
    cases: Cases | None = None
    retained_ignored: Count | None = Field(
        None, description="Retained messages on the trigger/command topics, ignored (never acted on)."
    )
    faults: dict[str, Annotated[int, Field(ge=1)]] | None = Field(
        None, description="Unexpected errors caught per place since start (the threads went on)."
    )
    spool: SpoolCounters | None = None
    compile_cache: CompileCache | None = None
    sparkplug: Sparkplug | None = None
    opcua: OpcUa | None = None
