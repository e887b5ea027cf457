"""Sparkplug B section: the station as a Sparkplug Edge Node for SCADA (e.g. Ignition's MQTT Engine)."""

from __future__ import annotations

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["SPARKPLUG_ID_PATTERN", "SparkplugConfig"]

# a Sparkplug ID is one topic level: UTF-8 without '+', '/', '#' (spec 3.0, section 4.1.1); no control characters
SPARKPLUG_ID_PATTERN = r"^[^#+/\x00-\x1f]+$"


class SparkplugConfig(EdgeAdModel):
    """Sparkplug B 3.0 beside the JSON topics: the ``mqtt`` broker, a client of its own (docs/integration.md)."""

    enabled: bool = Field(
        False,
        description="Publish NBIRTH/NDEATH and DBIRTH/DDATA for the station (needs: pip install 'edge_ad[sparkplug]').",
    )
    group_id: str = Field(
        "edge_ad",
        pattern=SPARKPLUG_ID_PATTERN,
        max_length=64,
        description="Sparkplug Group ID: spBv1.0/<group_id>/... (a line or area; no '+', '/', '#').",
    )
    edge_node_id: str | None = Field(
        None,
        pattern=SPARKPLUG_ID_PATTERN,
        max_length=64,
        description="Sparkplug Edge Node ID; default the station name. group_id + edge_node_id must be unique "
        "on the broker.",
    )
    device_id: str = Field(
        "station",
        pattern=SPARKPLUG_ID_PATTERN,
        max_length=64,
        description="Sparkplug Device ID of the inspection metrics (DBIRTH/DDATA).",
    )
    client_id: str | None = Field(
        None,
        min_length=1,
        description="MQTT client id of the Sparkplug session; default edge-ad-<station>-spb. Must differ from "
        "mqtt.client_id.",
    )

    def edge_node_id_for(self, station: str) -> str:
        """The Edge Node ID: ``edge_node_id``, default the station name."""
        return self.edge_node_id or station

    def client_id_for(self, station: str) -> str:
        """The MQTT client id of the Sparkplug session: ``client_id``, default ``edge-ad-<station>-spb``."""
        return self.client_id or f"edge-ad-{station}-spb"
