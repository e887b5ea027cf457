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


def _registered(client_cls) -> dict:
    return {call.args[0]: call.args[1] for call in client_cls.return_value.message_callback_add.call_args_list}


def test_retained_commands_are_ignored_and_counted_and_a_failing_handler_never_ends_the_thread():
    from edge_ad.guard import Guard

    seen, alarms = [], []

    def handler(payload: bytes) -> None:
        if payload == b"boom":
            raise RecursionError("maximum recursion depth exceeded")  # what json.loads raised on [[[...
        seen.append(payload)

    guard = Guard(on_alarm=lambda: alarms.append(1))
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        publisher = MqttPublisher(MqttConfig(), "cam1", handlers={"edge_ad/cam1/trigger": handler}, guard=guard)
        deliver = _registered(client_cls)["edge_ad/cam1/trigger"]
        assert client_cls.return_value.suppress_exceptions is True  # paho's own second layer
    for payload, retain in ((b'{"id": "OLD"}', True), (b"boom", False), (b"boom", False), (b'{"id": 1}', False)):
        deliver(None, None, mock.Mock(payload=payload, retain=retain))  # returns: the network thread goes on
    assert seen == [b'{"id": 1}'] and publisher.retained_ignored == 1
    assert guard.errors == {"mqtt message on edge_ad/cam1/trigger": 2} and alarms == [1]  # one alarm per place
    assert guard.alarm["message"].startswith("mqtt message on edge_ad/cam1/trigger: RecursionError")
