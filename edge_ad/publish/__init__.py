"""MQTT publishing: topics, versioned JSON payloads and the publisher client."""

from edge_ad.publish.client import MqttPublisher
from edge_ad.publish.payloads import load_schema, status_payload, verdict_payload
from edge_ad.publish.topics import Topics

__all__ = ["MqttPublisher", "Topics", "load_schema", "status_payload", "verdict_payload"]
