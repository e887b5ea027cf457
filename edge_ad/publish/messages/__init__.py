"""Payload shapes of every MQTT message, as pydantic models: they generate the JSON Schemas in ``../schemas/``.

The station builds its outbound payloads as plain dicts (``edge_ad.publish.payloads``: a verdict is never lost
to a validation bug); tests validate what it really sends against these models and the shipped schemas, and
a test keeps the shipped files equal to what these models generate. Inbound messages are validated at
runtime, strictly.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from edge_ad.publish.messages.base import SCHEMA_VERSION, Header, Message, ModelInfo
from edge_ad.publish.messages.inbound import (
    MAX_BODY,
    MAX_FRAMES,
    NONCE_PATTERN,
    CommandEnvelope,
    InstallBody,
    InstallCommand,
    RecalibrateBody,
    RecalibrateCommand,
    RollbackBody,
    RollbackCommand,
    TriggerMessage,
)
from edge_ad.publish.messages.replies import InstallResult, RecalibrateResult, RollbackResult
from edge_ad.publish.messages.stats import StatsMessage
from edge_ad.publish.messages.status import StatusMessage
from edge_ad.publish.messages.verdict import TriggerError, TriggerErrorKind, VerdictMessage, VerdictTopic

__all__ = [
    "MAX_BODY",
    "MAX_FRAMES",
    "MESSAGES",
    "NONCE_PATTERN",
    "SCHEMA_VERSION",
    "VERDICT_TOPIC",
    "CommandEnvelope",
    "Header",
    "InstallBody",
    "InstallCommand",
    "InstallResult",
    "Message",
    "ModelInfo",
    "RecalibrateBody",
    "RecalibrateCommand",
    "RecalibrateResult",
    "RollbackBody",
    "RollbackCommand",
    "RollbackResult",
    "StatsMessage",
    "StatusMessage",
    "TriggerError",
    "TriggerErrorKind",
    "TriggerMessage",
    "VerdictMessage",
    "VerdictTopic",
    "adapter",
]

VERDICT_TOPIC = (
    "On <prefix>/<station>/verdict (QoS mqtt.qos, not retained): one verdict (OK/NG) per judged frame, or the "
    "ERROR answer to a trigger that gets no verdict."
)
# schema file name (without .schema.json) -> the message type it describes, and its title
MESSAGES: dict[str, tuple[Any, str]] = {
    "verdict": (VerdictTopic, "edge_ad verdict, or the ERROR answer to a trigger"),
    "status": (StatusMessage, "edge_ad station status"),
    "stats": (StatsMessage, "edge_ad station statistics"),
    "trigger": (TriggerMessage, "edge_ad trigger (PLC -> station)"),
    "command": (CommandEnvelope, "edge_ad signed command envelope (operator -> station)"),
    "recalibrate": (RecalibrateBody, "edge_ad recalibrate command body"),
    "recalibrate-result": (RecalibrateResult, "edge_ad recalibrate command reply"),
    "install": (InstallBody, "edge_ad install command body (a signed bundle offer)"),
    "install-result": (InstallResult, "edge_ad install command reply"),
    "rollback": (RollbackBody, "edge_ad rollback command body"),
    "rollback-result": (RollbackResult, "edge_ad rollback command reply"),
}


def adapter(name: str) -> TypeAdapter[Any]:
    """A validator for the message type behind ``<name>.schema.json``."""
    return TypeAdapter(MESSAGES[name][0])
