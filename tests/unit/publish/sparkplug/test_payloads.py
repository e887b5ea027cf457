"""Sparkplug payloads read back by decoders that share nothing with edge_ad's generated classes."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

pytest.importorskip("google.protobuf")

from edge_ad.publish.sparkplug import payloads
from edge_ad.publish.sparkplug.metrics import DEVICE_METRICS, DataType
from tests.support.sparkplug import PROTO, decode, encode_rebirth, protoc_decode

TAHU_PROTO_SHA256 = "4432c5c483b7fb9732d0594c98a2e97dca5e517e39c5374a8b918d837f0b4a19"  # eclipse/tahu 5736e40
TS = 1_795_614_240_186


def test_the_proto_is_tahus_file_byte_for_byte():
    assert hashlib.sha256(PROTO.read_bytes()).hexdigest() == TAHU_PROTO_SHA256


def test_the_generated_code_is_the_proto():
    from google.protobuf import descriptor_pb2

    from edge_ad.publish.sparkplug import sparkplug_b_pb2

    exe = shutil.which("protoc") or pytest.skip("protoc not installed (apt-get install protobuf-compiler)")
    compiled = subprocess.run(
        [exe, f"-I{PROTO.parent}", "--descriptor_set_out=/dev/stdout", PROTO.name], capture_output=True, check=True
    ).stdout
    by_protoc = descriptor_pb2.FileDescriptorSet.FromString(compiled).file[0]
    generated = descriptor_pb2.FileDescriptorProto.FromString(sparkplug_b_pb2.DESCRIPTOR.serialized_pb)

    def no_json_names(messages) -> None:  # protoc's descriptor sets add json_name; gencode leaves it out
        for message in messages:
            for f in message.field:
                f.ClearField("json_name")
            no_json_names(message.nested_type)

    no_json_names(by_protoc.message_type)
    assert by_protoc == generated, "regenerate sparkplug_b_pb2.py (see edge_ad/publish/sparkplug/__init__.py)"


def test_nbirth_has_seq_0_bdseq_and_rebirth_false_without_alias():
    data = payloads.nbirth(bdseq=7, seq=0, ts_ms=TS)
    payload = decode(data)
    assert (payload.timestamp, payload.seq) == (TS, 0)
    metrics = payload.by_name()
    assert set(metrics) == {"bdSeq", "Node Control/Rebirth"}
    bdseq, rebirth = metrics["bdSeq"], metrics["Node Control/Rebirth"]
    assert (bdseq.datatype, bdseq.value_field, bdseq.value, bdseq.timestamp) == (4, "long_value", 7, TS)  # Int64
    assert (rebirth.datatype, rebirth.value, rebirth.alias) == (11, False, None)  # Boolean, no alias
    text = protoc_decode(data)
    assert 'name: "bdSeq"' in text and "long_value: 7" in text and "seq: 0" in text
    assert 'name: "Node Control/Rebirth"' in text and "boolean_value: false" in text and "alias" not in text


def test_ndeath_has_only_bdseq_and_no_seq():
    payload = decode(payloads.ndeath(bdseq=255, ts_ms=TS))
    assert payload.seq is None
    assert [(m.name, m.datatype, m.value) for m in payload.metrics] == [("bdSeq", 4, 255)]
    assert "seq" not in protoc_decode(payloads.ndeath(bdseq=3, ts_ms=TS)).replace("bdSeq", "")


def test_dbirth_names_every_metric_with_alias_datatype_and_value_or_null():
    current = {"Inspection/Threshold": (26.47, TS - 5), "Model/Name": ("brick", TS - 5), "Camera/State": ("online", TS)}
    data = payloads.dbirth(current, seq=1, ts_ms=TS)
    payload = decode(data)
    assert payload.seq == 1
    assert [(m.name, m.alias, m.datatype) for m in payload.metrics] == [
        (spec.name, spec.alias, spec.datatype) for spec in DEVICE_METRICS
    ]
    metrics = payload.by_name()
    assert metrics["Inspection/Threshold"].value == 26.47 and metrics["Inspection/Threshold"].timestamp == TS - 5
    assert metrics["Model/Name"].value == "brick" and metrics["Camera/State"].value == "online"
    unknown = metrics["Inspection/NG"]
    assert unknown.is_null and unknown.value is None and unknown.timestamp == TS  # null, never a made-up value
    text = protoc_decode(data)
    assert text.count("metrics {") == len(DEVICE_METRICS) and "is_null: true" in text
    assert 'name: "Inspection/Score Normalised"' in text and 'string_value: "brick"' in text


def test_ddata_carries_aliases_only():
    values = [("Inspection/NG", True), ("Inspection/Score", 40.46), ("Inspection/Seq", 2**40), ("Camera/State", "x")]
    data = payloads.ddata(values, seq=255, ts_ms=TS, stamp_ms=TS - 3)
    payload = decode(data)
    assert payload.seq == 255 and payload.timestamp == TS
    assert [(m.name, m.datatype, m.alias, m.value, m.timestamp) for m in payload.metrics] == [
        (None, None, 1, True, TS - 3),
        (None, None, 2, 40.46, TS - 3),
        (None, None, 5, 2**40, TS - 3),
        (None, None, 11, "x", TS - 3),
    ]
    text = protoc_decode(data)
    assert "name:" not in text and "datatype:" not in text
    assert "boolean_value: true" in text and "double_value: 40.46" in text and f"long_value: {2**40}" in text


def test_every_datatype_goes_to_its_value_field():
    fields = {DataType.Boolean: "boolean_value", DataType.Double: "double_value", DataType.String: "string_value"}
    fields |= {DataType.UInt64: "long_value", DataType.Int64: "long_value"}
    sample = {DataType.Boolean: True, DataType.Double: 0.25, DataType.String: "s", DataType.UInt64: 3}
    for spec in DEVICE_METRICS:
        (metric,) = decode(payloads.ddata([(spec.name, sample[spec.datatype])], 1, TS, TS)).metrics
        assert metric.value_field == fields[spec.datatype], spec.name


@pytest.mark.parametrize(
    ("data", "wanted"),
    [
        (encode_rebirth(True), True),
        (encode_rebirth(False), False),  # a write of false: nothing to do
        (b"", False),  # an empty payload asks for nothing
    ],
)
def test_a_rebirth_request(data, wanted):
    assert payloads.rebirth_requested(data) is wanted


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff" * 12, "not a Sparkplug B payload"),  # junk
        (encode_rebirth(True, name="Node Control/Reboot"), "is not writable"),  # a command we do not take
        (encode_rebirth(True)[:-3], "not a Sparkplug B payload"),  # truncated
        (b"\x12" * (payloads.MAX_COMMAND_BYTES + 1), "at most"),  # too big, refused before parsing
    ],
)
def test_other_commands_are_refused(data, error):
    with pytest.raises(ValueError, match=error):
        payloads.rebirth_requested(data)


# Sparkplug B 3.0, section 6.4.16 (DataType): the numbers a host reads; a wrong one makes a wrong tag type
SPEC_DATATYPES = {"Int64": 4, "UInt64": 8, "Double": 10, "Boolean": 11, "String": 12}
# (name, alias, datatype number): the interface a host keeps across births; change only by adding rows
EXPECTED_METRICS = [
    ("bdSeq", None, 4),
    ("Node Control/Rebirth", None, 11),
    ("Inspection/NG", 1, 11),
    ("Inspection/Score", 2, 10),
    ("Inspection/Score Normalised", 3, 10),
    ("Inspection/Threshold", 4, 10),
    ("Inspection/Seq", 5, 8),
    ("Inspection/Latency ms", 6, 10),
    ("Model/Name", 7, 12),
    ("Model/Version", 8, 12),
    ("Model/Variant", 9, 12),
    ("Model/Precision", 10, 12),
    ("Camera/State", 11, 12),
    ("Stats/FPS", 12, 10),
    ("Stats/NG Rate", 13, 10),
]


def test_datatype_numbers_are_the_specs_and_the_protos():
    """Found by the reviewer: nothing pinned the DataType numbers to the spec."""
    body = re.search(r"enum DataType \{(.*?)\}", PROTO.read_text(), re.S).group(1)
    proto = {name: int(number) for name, number in re.findall(r"^\s*(\w+)\s*=\s*(\d+);", body, re.M)}
    assert {t.name: t.value for t in DataType} == SPEC_DATATYPES
    assert {name: proto[name] for name in SPEC_DATATYPES} == SPEC_DATATYPES


def test_every_metric_has_its_pinned_name_alias_and_datatype_on_the_wire():
    from edge_ad.publish.sparkplug.metrics import BDSEQ, REBIRTH

    specs = [(m.name, m.alias, int(m.datatype)) for m in (BDSEQ, REBIRTH, *DEVICE_METRICS)]
    assert specs == EXPECTED_METRICS
    wire = [(m.name, m.alias, m.datatype) for m in decode(payloads.dbirth({}, seq=1, ts_ms=TS)).metrics]
    wire += [(m.name, m.alias, m.datatype) for m in decode(payloads.nbirth(bdseq=0, seq=0, ts_ms=TS)).metrics]
    assert sorted(wire, key=str) == sorted(EXPECTED_METRICS, key=str)  # read by the separately built decoder
