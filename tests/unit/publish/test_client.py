from __future__ import annotations

import json
import time
from pathlib import Path
from unittest import mock

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311

from edge_ad.config import MqttConfig
from edge_ad.publish import MqttPublisher
from edge_ad.publish.client import BACKLOG_QUIET_S
from edge_ad.publish.session import UNKNOWN, ReplyRoute
from edge_ad.publish.spool import Spool


def test_last_will_is_retained_qos1_offline_before_connecting():
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        client = client_cls.return_value
        publisher = MqttPublisher(MqttConfig(prefix="plant"), "cam1", run="r1")
        publisher.client.connect_async.assert_not_called()
        (topic, payload), kwargs = client.will_set.call_args
        assert topic == "plant/cam1/status"
        assert kwargs == {"qos": 1, "retain": True}
        assert json.loads(payload) == {  # no ts: the station cannot know when the broker will send it
            "schema": 2,
            "station": "cam1",
            "run": "r1",
            "state": "offline",
            "reason": "connection lost",
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


@pytest.mark.parametrize(("protocol", "falls_back"), [("auto", True), ("5", False)])
def test_auto_falls_back_to_311_when_the_broker_refuses_mqtt5(protocol, falls_back, caplog):
    """paho reports a 3.1.1 broker's CONNACK return code 1 as reason 0x84; only ``auto`` then retries in 3.1.1."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    publisher = MqttPublisher(MqttConfig(protocol=protocol), "cam1", handlers={"edge_ad/cam1/trigger": print})
    client = publisher.client  # a real paho client: its next CONNECT is built from what the fallback sets
    assert client._protocol == MQTTv5 and publisher.protocol is None
    unsupported = ReasonCode(PacketTypes.CONNACK, aName="Unsupported protocol version")
    publisher._on_connect(client, None, None, unsupported, None)
    assert not publisher.connected and publisher.protocol is None
    assert (client._protocol == MQTTv311) == falls_back
    assert (client._clean_session is False) if falls_back else not hasattr(client, "_clean_session")
    assert ("does not speak MQTT 5" in caplog.text) == falls_back
    assert ("refused the connection" in caplog.text) != falls_back
    with mock.patch.object(client, "publish"), mock.patch.object(client, "subscribe", return_value=(0, 1)):
        publisher._on_connect(client, None, mock.Mock(session_present=False), ReasonCode(PacketTypes.CONNACK), None)
    assert publisher.connected and publisher.protocol == ("3.1.1" if falls_back else "5")
    assert (
        publisher._route(_message(mock.Mock(ResponseTopic="answers/x", CorrelationData=None))) is None
    ) == falls_back


def _registered(client_cls) -> dict:
    return {call.args[0]: call.args[1] for call in client_cls.return_value.message_callback_add.call_args_list}


def test_retained_commands_are_ignored_and_counted_and_a_failing_handler_never_ends_the_thread():
    from edge_ad.guard import Guard

    seen, alarms = [], []

    def handler(payload: bytes, delivery) -> None:
        if payload == b"boom":
            raise RecursionError("maximum recursion depth exceeded")  # what json.loads raised on [[[...
        seen.append(payload)

    guard = Guard(on_alarm=lambda: alarms.append(1))
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        publisher = MqttPublisher(MqttConfig(), "cam1", handlers={"edge_ad/cam1/trigger": handler}, guard=guard)
        deliver = _registered(client_cls)["edge_ad/cam1/trigger"]
        assert client_cls.return_value.suppress_exceptions is True  # paho's own second layer
    for payload, retain in ((b'{"id": "OLD"}', True), (b"boom", False), (b"boom", False), (b'{"id": 1}', False)):
        deliver(None, None, mock.Mock(payload=payload, retain=retain, properties=None))  # the thread goes on
    assert seen == [b'{"id": 1}'] and publisher.retained_ignored == 1
    assert guard.errors == {"mqtt message on edge_ad/cam1/trigger": 2} and alarms == [1]  # one alarm per place
    assert guard.alarm["message"].startswith("mqtt message on edge_ad/cam1/trigger: RecursionError")


@pytest.mark.parametrize(
    ("protocol", "expiry", "client_kwargs", "connect_kwargs"),
    [
        ("3.1.1", 3600, {"clean_session": False}, {}),
        ("3.1.1", 0, {"clean_session": True}, {}),
        ("5", 0, {"protocol": MQTTv5}, {"clean_start": True}),
        ("5", 600, {"protocol": MQTTv5}, {"clean_start": False, "expiry": 600}),
    ],
)
def test_the_session_is_persistent_unless_its_expiry_is_zero(protocol, expiry, client_kwargs, connect_kwargs):
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        publisher = MqttPublisher(MqttConfig(protocol=protocol, session_expiry_s=expiry), "cam1")
        kwargs = client_cls.call_args.kwargs
        assert {k: kwargs[k] for k in client_kwargs} == client_kwargs and "clean_session" not in connect_kwargs
        publisher.start(wait=False)
        given = publisher.client.connect_async.call_args.kwargs
        publisher._closing.set()
        if "expiry" in connect_kwargs:
            assert given["properties"].SessionExpiryInterval == connect_kwargs.pop("expiry")
        assert {k: given[k] for k in connect_kwargs} == connect_kwargs
        assert ("clean_start" in given) == (protocol == "5")


def _started(protocol: str = "3.1.1") -> tuple[MqttPublisher, list, object]:
    """A publisher on a mocked paho client with a trigger handler; (publisher, deliveries, paho deliver callback)."""
    seen: list = []
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        client_cls.return_value.subscribe.return_value = (0, 42)
        publisher = MqttPublisher(
            MqttConfig(protocol=protocol), "cam1", handlers={"edge_ad/cam1/trigger": lambda p, d: seen.append(d)}
        )
        deliver = _registered(client_cls)["edge_ad/cam1/trigger"]
    return publisher, seen, deliver


def _message(properties=None) -> mock.Mock:
    return mock.Mock(payload=b'{"id": 1}', retain=False, topic="edge_ad/cam1/trigger", properties=properties)


def test_triggers_the_broker_kept_while_the_station_was_away_count_as_sent_when_it_left():
    """A persistent session delivers what it queued before its SUBACK and, beyond the broker's in-flight window,
    back to back after it: all of it sent no earlier than the loss. The first pause ends the backlog."""
    publisher, seen, deliver = _started()
    client = publisher.client
    publisher._on_connect(client, None, mock.Mock(session_present=True), mock.Mock(is_failure=False), None)
    deliver(client, None, _message())  # kept from before this process: its age is unknown
    publisher._on_subscribe(client, None, 42, [mock.Mock(is_failure=False)], None)
    deliver(client, None, _message())  # the rest of the queue, right after the SUBACK
    time.sleep(BACKLOG_QUIET_S + 0.05)
    before = time.time()
    deliver(client, None, _message())  # live
    assert [d.sent_at for d in seen[:2]] == [UNKNOWN, UNKNOWN] and seen[2].sent_at >= before
    del seen[1]
    publisher._on_disconnect(client, None, None, "lost", None)
    lost = publisher._lost_at
    publisher._on_connect(client, None, mock.Mock(session_present=True), mock.Mock(is_failure=False), None)
    deliver(client, None, _message())  # queued while away: sent after the loss, at the earliest
    publisher._on_subscribe(client, None, 42, [mock.Mock(is_failure=False)], None)
    publisher._on_connect(client, None, mock.Mock(session_present=False), mock.Mock(is_failure=False), None)
    deliver(client, None, _message())  # a new session has nothing queued: live
    assert lost is not None and seen[2].sent_at == lost and seen[3].sent_at >= lost
    assert all(d.route is None for d in seen)  # MQTT 3.1.1 has no response topic


def test_mqtt5_answers_also_go_to_the_response_topic_unless_it_is_the_stations_own():
    publisher, seen, deliver = _started("5")
    client = publisher.client
    publisher._on_connect(client, None, mock.Mock(session_present=False), mock.Mock(is_failure=False), None)
    for topic in ("plc/answers", "edge_ad/cam1/status", "plc/+/answers", "$SYS/x"):
        deliver(client, None, _message(mock.Mock(ResponseTopic=topic, CorrelationData=b"\x00c1")))
    deliver(client, None, _message(mock.Mock(spec=[])))  # no response topic
    assert seen[0].route == ReplyRoute("plc/answers", b"\x00c1") and [d.route for d in seen[1:]] == [None] * 4
    client.publish.reset_mock()
    publisher.publish_trigger_error(4711, "camera", "camera offline: no frame to judge", seen[0].route)
    (topic, payload), kwargs = client.publish.call_args
    assert topic == "plc/answers" and kwargs["qos"] == 1 and kwargs["properties"].CorrelationData == b"\x00c1"
    assert json.loads(payload)["trigger"] == {"id": 4711} and json.loads(payload)["verdict"] == "ERROR"


def test_messages_waiting_at_a_connect_are_sent_marked_replayed(tmp_path: Path):
    spool = Spool(tmp_path / "spool.sqlite")
    spool.append("edge_ad/cam1/verdict", b'{"seq":1}', seq=1)  # left by a run that lost the broker
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        publisher = MqttPublisher(MqttConfig(), "cam1", spool)
    client = client_cls.return_value
    client.publish.return_value = mock.Mock(rc=0, mid=1)
    publisher._on_connect(client, None, None, mock.Mock(is_failure=False), None)
    spool.append("edge_ad/cam1/verdict", b'{"seq":2}', seq=2)  # judged while connected
    client.publish.reset_mock()
    publisher._send_pending()
    sent = [json.loads(c.args[1]) for c in client.publish.call_args_list]
    assert sent == [{"seq": 1, "replayed": True}, {"seq": 2}]


def test_paho_forgets_its_own_copies_of_spooled_verdicts_at_a_reconnect():
    """paho would resend them unmarked under old ids; the spool resends them marked replayed."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_ad.publish.session import forget_unacknowledged

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t", clean_session=False)
    verdict = client.publish("edge_ad/cam1/verdict", b"{}", qos=1)  # not connected: kept by paho
    status = client.publish("edge_ad/cam1/status", b"{}", qos=1, retain=True)
    forget_unacknowledged(client, "edge_ad/cam1/verdict")
    assert [m.topic for m in client._out_messages.values()] == ["edge_ad/cam1/status"]
    assert status.rc != mqtt.MQTT_ERR_CONN_LOST
    with pytest.raises(RuntimeError, match="connection was lost"):  # a waiter is told, never left hanging
        verdict.wait_for_publish(0)


@pytest.mark.parametrize(("protocol", "expiry"), [("5", 2), ("3.1.1", None)])
def test_live_stats_expire_under_mqtt5_and_the_final_ones_are_marked_stale(protocol, expiry):
    """Found by the reviewer: after a kill the retained stats kept saying camera online."""
    with mock.patch("edge_ad.publish.client.mqtt.Client") as client_cls:
        client = client_cls.return_value
        publisher = MqttPublisher(MqttConfig(protocol=protocol), "cam1", run="r1", stats_expiry_s=2)
        publisher._connected.set()
        publisher.publish_stats({"frames": 3})
        (_, live), kwargs = client.publish.call_args
        props = kwargs["properties"]
        assert (getattr(props, "MessageExpiryInterval", None) if props else None) == expiry
        assert kwargs["retain"] and "stale" not in json.loads(live)
        publisher.publish_stats({"frames": 4}, final=True)
        (_, last), kwargs = client.publish.call_args
        assert kwargs["properties"] is None and json.loads(last)["stale"] is True
