"""Every MQTT topic edge_ad uses is built here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topics"]


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
