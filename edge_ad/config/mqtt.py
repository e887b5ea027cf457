"""MQTT broker section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["MqttConfig"]


class MqttConfig(EdgeAdModel):
    """Broker connection and topic prefix."""

    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    prefix: str = Field("edge_ad", pattern=r"^[^#+/][^#+]*$", description="First topic level: <prefix>/<station>/...")
    client_id: str | None = Field(None, description="MQTT client id; default edge-ad-<station>.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval in seconds.")
    qos: Literal[0, 1] = Field(1, description="QoS of verdict messages.")
    spool_max_messages: int = Field(
        100_000,
        ge=100,
        description="Verdicts kept on disk while the broker is unreachable; the oldest are dropped beyond this.",
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the first connection before starting anyway."
    )
