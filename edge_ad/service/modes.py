"""Which frames get scored: free-run (every Nth frame) or PLC-triggered; optional NG debounce."""

from __future__ import annotations

import logging
import threading
from collections import deque

from edge_ad.guard import RateLimitedLog
from edge_ad.service.inbound import load_json

__all__ = ["MAX_TRIGGER_BYTES", "Debouncer", "TriggerInbox", "parse_trigger"]

MAX_TRIGGER_BYTES = 1024

logger = logging.getLogger(__name__)


def parse_trigger(payload: bytes) -> str:
    """The id of a trigger message ``{"id": "<part id>"}`` (string or integer, at most 64 characters).

    Raises:
        ValueError: Oversized, too deeply nested, not JSON, not an object, missing/invalid id, or unknown fields.
    """
    message = load_json(payload, MAX_TRIGGER_BYTES, "trigger payload")
    if not isinstance(message, dict):
        raise ValueError('trigger payload must be a JSON object like {"id": "part-42"}')
    unknown = set(message) - {"id"}
    if unknown:
        raise ValueError(f"trigger payload has unknown field(s) {sorted(unknown)}")
    part = message.get("id")
    if isinstance(part, bool) or not isinstance(part, (str, int)) or not 0 < len(str(part)) <= 64:
        raise ValueError("trigger 'id' must be a string or integer of 1-64 characters")
    return str(part)


class TriggerInbox:
    """Pending PLC triggers; each is answered with the first frame captured after it arrived.

    A trigger is never answered with a frame captured more than ``timeout_s`` after it (that frame
    shows another part): it expires, counted in ``expired``. Past ``max_pending`` waiting triggers the
    oldest is dropped, counted in ``dropped``. Both are logged once a minute.
    """

    def __init__(self, max_pending: int = 64, timeout_s: float = 5.0) -> None:
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self._pending: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()
        self._log = RateLimitedLog(logger)
        self.accepted = 0
        self.rejected = 0
        self.dropped = 0
        self.expired = 0

    def push(self, part_id: str, received_ts: float) -> None:
        """Queue a trigger (the oldest is dropped beyond ``max_pending``)."""
        with self._lock:
            self._pending.append((part_id, received_ts))
            self.accepted += 1
            dropped = None
            if len(self._pending) > self.max_pending:
                dropped = self._pending.popleft()[0]
                self.dropped += 1
        if dropped is not None:
            self._log.warning("dropped", "trigger %s dropped: %d triggers waiting for a frame (camera too slow?)",
                              dropped, self.max_pending)  # fmt: skip

    def reject(self) -> None:
        """Count a malformed trigger."""
        with self._lock:
            self.rejected += 1

    def take_for(self, frame_ts: float) -> str | None:
        """The oldest trigger that this frame answers (captured at or after the trigger), if any."""
        expired = []
        with self._lock:
            while self._pending and frame_ts - self._pending[0][1] > self.timeout_s:
                expired.append(self._pending.popleft()[0])
            self.expired += len(expired)
            found = self._pending.popleft()[0] if self._pending and frame_ts >= self._pending[0][1] else None
        if expired:
            self._log.warning("expired", "trigger %s expired: no frame within %.1f s of it (%d so far)",
                              expired[-1], self.timeout_s, self.expired)  # fmt: skip
        return found


class Debouncer:
    """NG only when at least ``n`` of the last ``m`` raw verdicts were NG."""

    def __init__(self, n: int, m: int) -> None:
        if not 1 <= n <= m:
            raise ValueError(f"debounce needs 1 <= n <= m, got n={n}, m={m}")
        self.n = n
        self._recent: deque[bool] = deque(maxlen=m)

    def update(self, raw_ng: bool) -> bool:
        """Add a raw verdict; return the debounced one."""
        self._recent.append(raw_ng)
        return sum(self._recent) >= self.n
