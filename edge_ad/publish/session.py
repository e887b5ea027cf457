"""The JSON client's MQTT session: protocol 3.1.1 or 5, persistent or clean, and what comes with an inbound message.

A persistent session (``mqtt.session_expiry_s`` > 0) makes the broker keep the station's subscriptions
and queue the QoS 1 triggers and commands sent while the station is away; it delivers them right after
the next CONNACK, before it answers the station's new SUBSCRIBE. So a message that arrives on a resumed
session before that SUBACK was sent while the station was away: at the moment the connection was lost at
the earliest, or at an unknown time when the session is older than this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_ad.config import MqttConfig
from edge_ad.publish.topics import Topics

__all__ = [
    "Delivery",
    "ReplyRoute",
    "connect_options",
    "fall_back_to_311",
    "first_protocol",
    "forget_unacknowledged",
    "new_client",
    "refused_mqtt5",
    "reply_route",
]

UNKNOWN = 0.0  # sent_at of a message queued before this process connected: too old for any trigger


@dataclass(frozen=True)
class ReplyRoute:
    """Where an MQTT 5 sender wants its answer: the Response Topic and Correlation Data of its message."""

    topic: str
    correlation: bytes | None = None

    def properties(self) -> Properties:
        """PUBLISH properties of the answer (the correlation data, unchanged)."""
        props = Properties(PacketTypes.PUBLISH)
        if self.correlation is not None:
            props.CorrelationData = self.correlation
        return props


@dataclass(frozen=True)
class Delivery:
    """What the station knows about an inbound message besides its payload.

    Attributes:
        sent_at: When it was sent at the earliest (epoch s): its arrival for a live message, the moment the
            connection was lost for one the broker kept meanwhile, :data:`UNKNOWN` (0.0) when the broker kept it
            from before this process connected.
        route: MQTT 5 only: where to send a copy of the answer.
    """

    sent_at: float
    route: ReplyRoute | None = None


UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason code; paho reports a 3.1.1 broker's refusal (return code 1) as this


def first_protocol(config: MqttConfig) -> str:
    """The protocol of the first CONNECT: ``auto`` tries MQTT 5 first."""
    return "3.1.1" if config.protocol == "3.1.1" else "5"


def new_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho client for ``mqtt.protocol``, persistent unless ``session_expiry_s`` is 0."""
    if first_protocol(config) == "5":
        return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=config.session_expiry_s == 0)


def refused_mqtt5(config: MqttConfig, reason_code: Any) -> bool:
    """Whether a failed CONNACK says the broker does not speak MQTT 5, with ``auto`` allowed to fall back."""
    return config.protocol == "auto" and getattr(reason_code, "value", None) == UNSUPPORTED_PROTOCOL


def fall_back_to_311(client: mqtt.Client, config: MqttConfig) -> None:
    """Make ``client``'s next CONNECT an MQTT 3.1.1 one, with the same session persistence.

    paho (2.x) downgrades 3.1.1 to 3.1 the same way: its reconnect builds the CONNECT from these two
    attributes; MQTT 5's clean start and session expiry are not sent in 3.1.1.

    Raises:
        RuntimeError: This paho no longer has them (``tests/unit/publish/test_client.py`` checks they exist).
    """
    if not hasattr(client, "_protocol") or not hasattr(client, "_clean_start"):
        raise RuntimeError("paho's client internals changed: cannot fall back to MQTT 3.1.1; set mqtt.protocol")
    client._protocol = mqtt.MQTTv311
    client._clean_session = config.session_expiry_s == 0


def connect_options(config: MqttConfig) -> dict[str, Any]:
    """Extra ``connect_async`` arguments: MQTT 5's clean start and Session Expiry Interval."""
    if first_protocol(config) != "5":
        return {}  # 3.1.1: the clean-session flag is the client's
    if config.session_expiry_s == 0:
        return {"clean_start": True}
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = config.session_expiry_s
    return {"clean_start": False, "properties": props}


def reply_route(message: mqtt.MQTTMessage, topics: Topics) -> tuple[ReplyRoute | None, str]:
    """The MQTT 5 Response Topic and Correlation Data of ``message``: (route, "") or (None, why it is not used).

    A response topic must be a plain topic name (no wildcards, no ``$``) that is none of the station's own
    topics: a trigger must not make the station publish on its status or command topics.
    """
    props = getattr(message, "properties", None)
    topic = getattr(props, "ResponseTopic", None)
    if not topic:
        return None, ""
    if any(c in topic for c in "+#\x00") or topic.startswith("$") or len(topic.encode()) > 65535:
        return None, "response topic is not a topic name to publish on"
    if topics.is_own(topic):
        return None, "response topic is one of the station's own topics"
    correlation = getattr(props, "CorrelationData", None)
    return ReplyRoute(topic, bytes(correlation) if correlation is not None else None), ""


def forget_unacknowledged(client: mqtt.Client, topic: str) -> None:
    """Drop paho's own copies of unacknowledged QoS 1 messages on ``topic`` (call in ``on_connect``).

    paho resends them after a reconnect, unmarked and under their old message ids, right after
    ``on_connect``; the spool resends the same messages itself, marked ``replayed``. Without this a consumer
    could get a late copy without the mark, and a PUBACK for an old id could be taken for a new message's.
    Uses paho internals: when they are not there, nothing is dropped (duplicates, as before).
    """
    messages = getattr(client, "_out_messages", None)
    lock = getattr(client, "_out_message_mutex", None)
    if not isinstance(messages, dict) or lock is None:
        return
    with lock:
        for mid, message in list(messages.items()):
            if getattr(message, "topic", None) == topic and getattr(message, "qos", 0) == 1:
                del messages[mid]
                info = getattr(message, "info", None)
                if info is not None:
                    info.rc = mqtt.MQTT_ERR_CONN_LOST
                    info._set_as_published()
