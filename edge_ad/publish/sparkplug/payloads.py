"""Sparkplug B payloads (protobuf, ``sparkplug_b.proto``): births, death, data, and the rebirth command.

Births carry every metric with name, alias, datatype, timestamp and value (or ``is_null``); DDATA
carries aliases only (spec 3.0, section 6.4.2). NDEATH has no ``seq``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.message import DecodeError

from edge_ad.publish.sparkplug import sparkplug_b_pb2 as pb
from edge_ad.publish.sparkplug.metrics import BDSEQ, BY_NAME, DEVICE_METRICS, REBIRTH, DataType, MetricSpec, Value

__all__ = ["MAX_COMMAND_BYTES", "Stamped", "dbirth", "ddata", "nbirth", "ndeath", "rebirth_requested"]

MAX_COMMAND_BYTES = 64 * 1024  # an NCMD bigger than this is refused before it is parsed
Stamped = tuple[Value, int]  # a metric's value and its timestamp (ms since the epoch)


def _metric(payload: pb.Payload, spec: MetricSpec, value: Value, ts_ms: int, birth: bool) -> None:
    metric = payload.metrics.add()
    if birth or spec.alias is None:
        metric.name = spec.name
        metric.datatype = spec.datatype
    if spec.alias is not None:
        metric.alias = spec.alias
    metric.timestamp = ts_ms
    if value is None:
        metric.is_null = True
    elif spec.datatype is DataType.Boolean:
        metric.boolean_value = bool(value)
    elif spec.datatype in (DataType.Int64, DataType.UInt64):
        metric.long_value = int(value) & 0xFFFF_FFFF_FFFF_FFFF  # Int64 travels as its two's complement
    elif spec.datatype is DataType.Double:
        metric.double_value = float(value)
    else:
        metric.string_value = str(value)


def _payload(ts_ms: int, seq: int | None) -> pb.Payload:
    payload = pb.Payload(timestamp=ts_ms)
    if seq is not None:
        payload.seq = seq
    return payload


def nbirth(bdseq: int, seq: int, ts_ms: int) -> bytes:
    """The Edge Node's birth: ``bdSeq`` (as in the Will of this connection) and ``Node Control/Rebirth`` = false."""
    payload = _payload(ts_ms, seq)
    _metric(payload, BDSEQ, bdseq, ts_ms, birth=True)
    _metric(payload, REBIRTH, False, ts_ms, birth=True)
    return payload.SerializeToString()


def ndeath(bdseq: int, ts_ms: int) -> bytes:
    """The Edge Node's death (the Will, and sent before a clean disconnect): only ``bdSeq``, no ``seq``."""
    payload = _payload(ts_ms, None)
    _metric(payload, BDSEQ, bdseq, ts_ms, birth=True)
    return payload.SerializeToString()


def dbirth(current: Mapping[str, Stamped], seq: int, ts_ms: int) -> bytes:
    """The station device's birth: every device metric with its current value (null when not known yet)."""
    payload = _payload(ts_ms, seq)
    for spec in DEVICE_METRICS:
        value, stamp = current.get(spec.name, (None, ts_ms))
        _metric(payload, spec, value, stamp, birth=True)
    return payload.SerializeToString()


def ddata(values: Iterable[tuple[str, Value]], seq: int, ts_ms: int, stamp_ms: int) -> bytes:
    """Device data: the given metrics by alias, stamped ``stamp_ms`` (when they were measured)."""
    payload = _payload(ts_ms, seq)
    for name, value in values:
        _metric(payload, BY_NAME[name], value, stamp_ms, birth=False)
    return payload.SerializeToString()


def rebirth_requested(data: bytes) -> bool:
    """Whether an NCMD asks for a rebirth (``Node Control/Rebirth`` = true).

    Raises:
        ValueError: Not a Sparkplug payload, too big, or a metric this node does not take.
    """
    if len(data) > MAX_COMMAND_BYTES:
        raise ValueError(f"NCMD of {len(data)} bytes (at most {MAX_COMMAND_BYTES})")
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise ValueError(f"NCMD is not a Sparkplug B payload ({exc})") from None
    rebirth = False
    for metric in payload.metrics:
        if metric.name != REBIRTH.name:
            raise ValueError(f"NCMD metric {metric.name or metric.alias!r} is not writable (only {REBIRTH.name!r})")
        if metric.WhichOneof("value") != "boolean_value":
            raise ValueError(f"NCMD {REBIRTH.name!r} needs a boolean value")
        rebirth = rebirth or metric.boolean_value
    return rebirth
