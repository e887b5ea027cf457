from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_ad.config import EdgeAdConfig

BASE = {"station": "line3-cam1", "camera": {"source": 0}, "model": {"path": "/models/brick"}}


def config(**sparkplug) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate({**BASE, "sparkplug": sparkplug})


def test_off_by_default_with_the_station_as_edge_node():
    spb = EdgeAdConfig.model_validate(BASE).sparkplug
    assert not spb.enabled and spb.group_id == "edge_ad" and spb.device_id == "station"
    assert spb.edge_node_id_for("line3-cam1") == "line3-cam1"
    assert spb.client_id_for("line3-cam1") == "edge-ad-line3-cam1-spb"
    assert config(edge_node_id="Cam 1").sparkplug.edge_node_id_for("line3-cam1") == "Cam 1"  # spaces are allowed


@pytest.mark.parametrize("key", ["group_id", "edge_node_id", "device_id"])
@pytest.mark.parametrize("bad", ["a/b", "a+", "#", "", "tab\there"])
def test_sparkplug_ids_are_one_topic_level(key, bad):
    with pytest.raises(ValidationError, match=key):
        config(enabled=True, **{key: bad})


@pytest.mark.parametrize(
    "sections",
    [
        {"sparkplug": {"enabled": True, "client_id": "edge-ad-line3-cam1"}},  # the JSON client's default id
        {"sparkplug": {"enabled": True, "client_id": "cam1"}, "mqtt": {"client_id": "cam1"}},
        {"sparkplug": {"enabled": True}, "mqtt": {"client_id": "edge-ad-line3-cam1-spb"}},
    ],
)
def test_the_sparkplug_session_needs_a_client_id_of_its_own(sections):
    with pytest.raises(ValidationError, match="must differ from the JSON client's id"):
        EdgeAdConfig.model_validate({**BASE, **sections})
