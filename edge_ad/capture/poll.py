"""What a frame source's ``read`` may return besides a frame: IDLE (alive, nothing yet) or None (the end)."""

from __future__ import annotations

from enum import Enum

__all__ = ["IDLE", "Idle"]


class Idle(Enum):
    """A triggered camera waiting for its trigger: no frame, but alive (the supervisor's heartbeat goes on)."""

    IDLE = "idle"


IDLE = Idle.IDLE
