"""Whether a station's retained messages describe a running station (docs/mqtt.md#birth-and-death-of-a-run).

Light on purpose (no daemon, no OpenVINO): ``edge-ad status``, the fleet view and the rollout all ask it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["UP_STATES", "stats_are_current"]

UP_STATES = frozenset({"online", "camera_offline"})  # a run that is alive


def stats_are_current(status: Mapping[str, Any], stats: Mapping[str, Any]) -> bool:
    """Whether retained stats describe a running station: the status of the same run says it is up.

    One connection has one Last Will, and it is the status: after a kill under MQTT 3.1.1 the retained stats
    keep the dead run's last figures (MQTT 5: they expire); a run's final stats say ``"stale": true``.
    """
    if stats.get("stale"):
        return False
    return status.get("state") in UP_STATES and stats.get("run") == status.get("run")
