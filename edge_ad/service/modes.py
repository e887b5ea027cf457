"""Which frames get scored: free-run (every Nth frame) or PLC-triggered; optional NG debounce."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from edge_ad.guard import RateLimitedLog
from edge_ad.service.inbound import load_json
from edge_ad.types import Verdict

__all__ = [
    "MAX_TRIGGER_BYTES",
    "Debouncer",
    "Outcome",
    "Trigger",
    "TriggerInbox",
    "TriggerRejected",
    "TriggerReply",
    "check_trigger_id",
    "parse_trigger",
]

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
    return check_trigger_id(message.get("id"))


def check_trigger_id(part: object) -> str:
    """A trigger id as text: a string or integer of 1-64 characters (the rule of every trigger source).

    Raises:
        ValueError: Anything else.
    """
    if isinstance(part, bool) or not isinstance(part, (str, int)) or not 0 < len(str(part)) <= 64:
        raise ValueError("trigger 'id' must be a string or integer of 1-64 characters")
    return str(part)


Outcome = Literal["invalid", "mode", "starting", "camera", "stopping", "dropped", "expired"]


class TriggerRejected(Exception):
    """A trigger that will get no verdict, and why (``kind`` for machines, the message for people).

    Args:
        kind: ``invalid`` id, wrong ``mode``, station ``starting``, ``camera`` offline, station ``stopping``,
            ``dropped`` (too many waiting) or ``expired`` (no frame in time).
        reason: One line for the operator.
    """

    def __init__(self, kind: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class TriggerReply(Protocol):
    """Whoever waits for a trigger's answer in the same call (an OPC UA ``Trigger``); MQTT triggers have none.

    At most one call per trigger, from any thread (the daemon's, or the one whose trigger pushed it out of
    the queue); must not block.
    """

    @property
    def withdrawn(self) -> bool:
        """The caller gave up: the trigger is to be dropped unanswered (counted as expired)."""

    def answered(self, verdict: Verdict) -> None:
        """The verdict published for this trigger."""

    def lost(self, rejected: TriggerRejected) -> None:
        """The trigger was dropped or expired before a frame answered it."""


@dataclass(frozen=True)
class Trigger:
    """A trigger waiting for its frame: the part id, when it came (epoch s) and who waits for the answer."""

    id: str
    received_ts: float
    reply: TriggerReply | None = None


class TriggerInbox:
    """Pending PLC triggers; each is answered with the first frame captured after it arrived.

    A trigger is never answered with a frame captured more than ``timeout_s`` after it (that frame
    shows another part): it expires, counted in ``expired``. Past ``max_pending`` waiting triggers the
    oldest is dropped, counted in ``dropped``. Both are logged once a minute, and a trigger's
    :class:`TriggerReply` hears of it. MQTT and OPC UA triggers wait in this one queue, in arrival order.
    """

    def __init__(self, max_pending: int = 64, timeout_s: float = 5.0) -> None:
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self._pending: deque[Trigger] = deque()
        self._lock = threading.Lock()
        self._log = RateLimitedLog(logger)
        self.accepted = 0
        self.rejected = 0
        self.dropped = 0
        self.expired = 0

    def push(self, part_id: str, received_ts: float, reply: TriggerReply | None = None) -> None:
        """Queue a trigger (the oldest is dropped beyond ``max_pending``); ``reply`` hears what becomes of it."""
        with self._lock:
            self._pending.append(Trigger(part_id, received_ts, reply))
            self.accepted += 1
            dropped = None
            if len(self._pending) > self.max_pending:
                dropped = self._pending.popleft()
                self.dropped += 1
        if dropped is not None:
            reason = f"dropped: {self.max_pending} triggers waiting for a frame (camera too slow?)"
            self._log.warning("dropped", "trigger %s %s", dropped.id, reason)
            if dropped.reply is not None:
                dropped.reply.lost(TriggerRejected("dropped", reason))

    def reject(self) -> None:
        """Count a malformed trigger."""
        with self._lock:
            self.rejected += 1

    def take_for(self, frame_ts: float) -> Trigger | None:
        """The oldest trigger that this frame answers (captured at or after the trigger), if any."""
        expired: list[Trigger] = []
        withdrawn = 0
        with self._lock:
            while self._pending and (
                frame_ts - self._pending[0].received_ts > self.timeout_s
                or (self._pending[0].reply is not None and self._pending[0].reply.withdrawn)
            ):
                old = self._pending.popleft()
                if old.reply is not None and old.reply.withdrawn:
                    withdrawn += 1  # its caller already gave up (and was told so)
                else:
                    expired.append(old)
            self.expired += len(expired) + withdrawn
            found = self._pending.popleft() if self._pending and frame_ts >= self._pending[0].received_ts else None
        if expired:
            reason = f"expired: no frame within {self.timeout_s:.1f} s of it"
            self._log.warning("expired", "trigger %s %s (%d so far)", expired[-1].id, reason, self.expired)
            for old in expired:
                if old.reply is not None:
                    old.reply.lost(TriggerRejected("expired", reason))
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
