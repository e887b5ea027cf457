"""Every MQTT topic edge_ad uses is built here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SparkplugTopics", "Topics"]

SPARKPLUG_NAMESPACE = "spBv1.0"


@dataclass(frozen=True)
class Topics:
    """Topic names of one station: ``<prefix>/<station>/<leaf>``."""

    station: str
    prefix: str = "edge_ad"

    def _leaf(self, leaf: str) -> str:
        return f"{self.prefix}/{self.station}/{leaf}"

    def status(self) -> str:
        """Retained station state (online/offline/error); also the Last Will."""
        return self._leaf("status")

    def verdict(self) -> str:
        """One message per scored frame, QoS 1, not retained."""
        return self._leaf("verdict")

    def stats(self) -> str:
        """Retained periodic statistics."""
        return self._leaf("stats")

    def trigger(self) -> str:
        """PLC -> daemon: score the next frame."""
        return self._leaf("trigger")

    def command(self, name: str) -> str:
        """Operator -> daemon command (e.g. ``recalibrate``); off unless configured."""
        return self._leaf(f"cmd/{name}")

    def command_result(self, name: str) -> str:
        """Daemon -> operator: outcome of a command."""
        return self._leaf(f"cmd/{name}/result")

    def is_own(self, topic: str) -> bool:
        """Whether ``topic`` is one the station publishes or listens on (status, stats, verdict, trigger, cmd/...)."""
        leaf = topic.removeprefix(self._leaf(""))
        return leaf != topic and (leaf in ("status", "stats", "verdict", "trigger") or leaf.startswith("cmd/"))


@dataclass(frozen=True)
class SparkplugTopics:
    """Sparkplug B topics of an Edge Node and its device: ``spBv1.0/<group_id>/<TYPE>/<edge_node_id>[/<device_id>]``."""

    group_id: str
    edge_node_id: str
    device_id: str

    def node(self, message_type: Literal["NBIRTH", "NDEATH", "NDATA", "NCMD"]) -> str:
        """An Edge Node topic (NDEATH is the Will of the Sparkplug session; NCMD is host -> node)."""
        return f"{SPARKPLUG_NAMESPACE}/{self.group_id}/{message_type}/{self.edge_node_id}"

    def device(self, message_type: Literal["DBIRTH", "DDEATH", "DDATA", "DCMD"]) -> str:
        """A topic of the station device (its inspection metrics)."""
        return f"{SPARKPLUG_NAMESPACE}/{self.group_id}/{message_type}/{self.edge_node_id}/{self.device_id}"
