"""Read what the station sends as Sparkplug B without edge_ad's generated classes.

A protobuf wire-format decoder written from the field numbers of ``sparkplug_b.proto`` (Eclipse
Tahu), an encoder for the host's rebirth command, ``protoc --decode`` for a second opinion, and a
paho subscriber that keeps every Sparkplug message in arrival order.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.support.broker import Subscriber

__all__ = [
    "PROTO",
    "Message",
    "Metric",
    "Payload",
    "SparkplugRecorder",
    "decode",
    "encode_rebirth",
    "protoc_decode",
]

PROTO = Path(__file__).resolve().parents[2] / "edge_ad" / "publish" / "sparkplug" / "sparkplug_b.proto"
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of every field: int, bytes of a length-delimited or fixed field."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire == LENGTH:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == FIXED64:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == FIXED32:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire} of field {number}")
        out.append((number, wire, value))
    return out


@dataclass
class Metric:
    """Payload.Metric (fields 1-7 and the scalar values 10-16)."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_null: bool = False
    value: Any = None
    value_field: str | None = None


@dataclass
class Payload:
    """Payload: timestamp (1), metrics (2), seq (3)."""

    timestamp: int | None = None
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)
    error: str | None = None  # not a Sparkplug payload (what a test sends as junk)

    def by_name(self) -> dict[str, Metric]:
        return {m.name: m for m in self.metrics if m.name is not None}


_VALUES = {
    10: ("int_value", lambda v: v),
    11: ("long_value", lambda v: v),
    12: ("float_value", lambda v: struct.unpack("<f", v)[0]),
    13: ("double_value", lambda v: struct.unpack("<d", v)[0]),
    14: ("boolean_value", bool),
    15: ("string_value", lambda v: v.decode("utf-8")),
    16: ("bytes_value", bytes),
}


def _metric(data: bytes) -> Metric:
    metric = Metric()
    for number, _, value in _fields(data):
        if number == 1:
            metric.name = value.decode("utf-8")
        elif number == 2:
            metric.alias = value
        elif number == 3:
            metric.timestamp = value
        elif number == 4:
            metric.datatype = value
        elif number == 7:
            metric.is_null = bool(value)
        elif number in _VALUES:
            metric.value_field, convert = _VALUES[number]
            metric.value = convert(value)
    return metric


def decode(data: bytes) -> Payload:
    """A Sparkplug B payload from its protobuf bytes."""
    payload = Payload()
    for number, _, value in _fields(data):
        if number == 1:
            payload.timestamp = value
        elif number == 2:
            payload.metrics.append(_metric(value))
        elif number == 3:
            payload.seq = value
    return payload


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length(number: int, data: bytes) -> bytes:
    return _key(number, LENGTH) + _encode_varint(len(data)) + data


def encode_rebirth(value: bool = True, name: str = "Node Control/Rebirth", ts_ms: int | None = None) -> bytes:
    """The NCMD a host sends to ask for a rebirth: one Boolean metric (datatype 11) by name."""
    ts_ms = round(time.time() * 1000) if ts_ms is None else ts_ms
    metric = (
        _length(1, name.encode())
        + _key(3, VARINT)
        + _encode_varint(ts_ms)
        + _key(4, VARINT)
        + _encode_varint(11)
        + _key(14, VARINT)
        + _encode_varint(int(value))
    )
    return _key(1, VARINT) + _encode_varint(ts_ms) + _length(2, metric)


def protoc_decode(data: bytes) -> str:
    """``protoc --decode`` of a payload against the spec's .proto (text format); skips without protoc."""
    import pytest

    exe = shutil.which("protoc") or pytest.skip("protoc not installed (apt-get install protobuf-compiler)")
    proc = subprocess.run(
        [exe, f"-I{PROTO.parent}", "--decode=org.eclipse.tahu.protobuf.Payload", PROTO.name],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return proc.stdout.decode()


@dataclass
class Message:
    """One Sparkplug message as received."""

    topic: str
    kind: str  # NBIRTH, NDEATH, DBIRTH, DDATA, NCMD...
    payload: Payload
    qos: int
    retain: bool
    raw: bytes


@dataclass
class SparkplugRecorder(Subscriber):
    """Subscribes (QoS 1) to ``spBv1.0/...`` and decodes every message, in arrival order.

    ``session`` keeps a persistent session (with mosquitto's ``queue_qos0_messages`` the broker also
    queues the QoS 0 births and data while the recorder is away, e.g. across a broker restart).
    """

    topic: str = "spBv1.0/#"

    def _record(self, msg: mqtt.MQTTMessage) -> Message:
        kind = msg.topic.split("/")[2]
        try:
            payload = decode(msg.payload)
        except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:
            payload = Payload(error=f"{type(exc).__name__}: {exc}")
        return Message(msg.topic, kind, payload, msg.qos, bool(msg.retain), bytes(msg.payload))

    def of(self, *kinds: str) -> list[Message]:
        """Messages of these kinds (all kinds when none given), in arrival order."""
        with self._lock:
            return [m for m in self.messages if not kinds or m.kind in kinds]
