"""What travels on ``<prefix>/<station>/verdict``: one verdict per judged frame, or the ERROR answer to a trigger."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge_ad.publish.messages.base import Header, Message, ModelInfo

__all__ = ["TriggerError", "TriggerErrorKind", "TriggerRef", "VerdictMessage", "VerdictTopic"]

TriggerErrorKind = Literal["invalid", "mode", "starting", "camera", "stopping", "dropped", "expired"]

TS = "Seconds since the Unix epoch (UTC), a whole number of milliseconds; the same instant as time."
TIME = "The same instant as ts: ISO 8601 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)."
REPLAYED = (
    "true when sent from the spool after a broker outage or a restart (late, and maybe a duplicate: de-duplicate "
    "by seq); absent on live messages."
)


class FrameInfo(Message):
    """The frame that was judged."""

    index: int = Field(ge=1, description="Frame counter of the source.")
    origin: str = Field(description="File name, device or URL the frame came from.")


class TriggerRef(Message):
    """The trigger this message answers."""

    id: str | int = Field(description="The trigger's id exactly as sent, with its JSON type (4711 stays a number).")


class CameraFrame(Message):
    """What a GenICam camera said about the frame: match parts by it on the PLC side."""

    frame_id: int = Field(ge=0, description="The camera's frame (block) id; GigE Vision 1.x wraps 65535 -> 1.")
    timestamp_ns: int = Field(
        ge=0, description="The camera's own timestamp of the exposure in nanoseconds (its clock, not the host's)."
    )


class Hint(Message):
    """The label of the most similar labelled past case (a hint for the operator, not a decision)."""

    label: str
    case: int = Field(ge=0)
    similarity: float = Field(ge=-1, le=1, description="Cosine similarity of the two embeddings.")


class VerdictMessage(Header):
    """One judged frame: OK or NG."""

    seq: int = Field(ge=1, description="1, 2, 3, ... per station across restarts; a gap means a lost verdict.")
    ts: float = Field(description=f"Capture time. {TS}")
    time: str = Field(description=f"Capture time. {TIME}")
    verdict: Literal["OK", "NG"] = Field(description="NG when score >= threshold (with debounce: see raw_verdict).")
    score: float = Field(description="Raw anomaly score, in the space of threshold (6 decimal places).")
    score_norm: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The score on a 0..1 scale, 0.5 at the threshold: 0.5 * score / threshold clipped to [0, 1], "
        "comparable across models; this frame scored NG when it is >= 0.5 (6 decimal places: within 1e-6 of 0.5 "
        "the verdict decides).",
    )
    threshold: float = Field(description="The threshold the running variant judges with (6 decimal places).")
    model: ModelInfo
    latency_ms: float = Field(ge=0, description="Preprocessing + inference time.")
    frame: FrameInfo
    trigger: TriggerRef | None = Field(None, description="Triggered mode: the trigger this verdict answers.")
    camera: CameraFrame | None = Field(
        None, description="GenICam cameras: the camera's frame id and timestamp, next to ts (the host's clock)."
    )
    raw_verdict: Literal["OK", "NG"] | None = Field(None, description="With debounce: this frame's own verdict.")
    evidence: str | None = Field(
        None,
        description="NG with evidence.enabled: path of the saved frame JPEG on the station's own filesystem "
        "(its heatmap overlay is <name>_heatmap.jpg beside it); not a URL.",
    )
    case: int | None = Field(
        None, ge=0, description="With cases.enabled: the id this frame is remembered under in the case store."
    )
    hint: Hint | None = Field(None, description="NG with cases.enabled: the label of the most similar past case.")
    replayed: bool | None = Field(None, description=REPLAYED)


class TriggerError(Header):
    """A trigger that gets no verdict, and why: the answer is ERROR instead of OK/NG (it has no seq)."""

    ts: float = Field(description=f"When the station gave up on the trigger. {TS}")
    time: str = Field(description=TIME)
    verdict: Literal["ERROR"]
    trigger: TriggerRef
    error: TriggerErrorKind = Field(
        description="invalid message or id, mode (free_run station), starting, camera offline, stopping, dropped "
        "(too many waiting), expired (no frame in time, the camera lost the frame it took for it, or it waited at "
        "the broker too long)."
    )
    reason: str = Field(description="One line for people.")
    replayed: bool | None = Field(None, description=REPLAYED)


VerdictTopic = Annotated[VerdictMessage | TriggerError, Field(discriminator="verdict")]
