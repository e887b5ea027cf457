"""EdgeNode.update without a broker: what becomes a DDATA, and the bound on what waits."""

from __future__ import annotations

import pytest

pytest.importorskip("google.protobuf")

from edge_ad.config import MqttConfig, SparkplugConfig
from edge_ad.publish.sparkplug import node as node_module
from edge_ad.publish.sparkplug.node import EdgeNode


@pytest.fixture
def node(tmp_path) -> EdgeNode:
    return EdgeNode(SparkplugConfig(enabled=True), MqttConfig(), "line1", tmp_path)  # never started: no network


def test_only_changes_and_verdict_events_wait_to_be_sent(node):
    node.stats(10.0, 0.01)
    node.stats(10.0, 0.01)  # unchanged: nothing new to send
    node.stats(12.5, 0.01)  # only the fps changed
    node.camera("online")
    node.update({"Inspection/NG": False, "Inspection/Seq": 1}, ts=1.0)
    node.update({"Inspection/NG": False, "Inspection/Seq": 2}, ts=2.0)  # NG unchanged, but every verdict is sent
    assert [dict(values) for values, _ in node._pending] == [
        {"Stats/FPS": 10.0, "Stats/NG Rate": 0.01},
        {"Stats/FPS": 12.5},
        {"Camera/State": "online"},
        {"Inspection/NG": False, "Inspection/Seq": 1},
        {"Inspection/NG": False, "Inspection/Seq": 2},
    ]
    assert node._pending[-1][1] == 2000  # stamped with the verdict's time, in ms
    assert node.counters() == {"online": False, "bdseq": None, "births": 0, "messages": 0, "dropped": 0, "rejected": 0}


def test_beyond_the_bound_the_oldest_updates_are_dropped_and_counted(node, monkeypatch):
    monkeypatch.setattr(node_module, "MAX_PENDING", 3)
    for seq in range(1, 6):
        node.update({"Inspection/Seq": seq})
    assert [values for values, _ in node._pending] == [[("Inspection/Seq", s)] for s in (3, 4, 5)]
    assert node.counters()["dropped"] == 2
