from __future__ import annotations

import json
from unittest import mock

from edge_ad.config import MqttConfig
from edge_ad.publish import MqttPublisher


def test_last_will_is_retained_qos1_offline_before_connecting():
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        client = client_cls.return_value
        publisher = MqttPublisher(MqttConfig(prefix="plant"), "cam1")
        publisher.client.connect_async.assert_not_called()
        (topic, payload), kwargs = client.will_set.call_args
        assert topic == "plant/cam1/status"
        assert kwargs == {"qos": 1, "retain": True}
        assert json.loads(payload) | {"ts": 0} == {
            "schema": 1,
            "station": "cam1",
            "state": "offline",
            "reason": "connection lost",
            "ts": 0,
        }
        assert client_cls.call_args.kwargs["client_id"] == "edge-ad-cam1"


def test_refused_connection_is_not_treated_as_connected():
    with mock.patch("edge_ad.publish.client.mqtt.Client"):
        publisher = MqttPublisher(MqttConfig(), "cam1")
        refused = mock.Mock(is_failure=True)
        publisher._on_connect(publisher.client, None, None, refused, None)
        assert not publisher.connected
        publisher.client.publish.assert_not_called()
        publisher._on_connect(publisher.client, None, None, mock.Mock(is_failure=False), None)
        assert publisher.connected
        topic, payload = publisher.client.publish.call_args.args
        assert topic == "edge_ad/cam1/status" and json.loads(payload)["state"] == "online"
        assert publisher.client.publish.call_args.kwargs == {"qos": 1, "retain": True}
