"""Which frames get scored: free-run (every Nth frame) or PLC-triggered; optional NG debounce."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from edge_ad.guard import RateLimitedLog
from edge_ad.publish.messages import TriggerErrorKind
from edge_ad.service.inbound import load_json
from edge_ad.types import Verdict

__all__ = [
    "MAX_TRIGGER_BYTES",
    "BadTrigger",
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


class BadTrigger(ValueError):
    """A trigger message the station cannot take; ``part`` is its id when one can be read (so it can be answered)."""

    def __init__(self, reason: str, part: str | int | None = None) -> None:
        super().__init__(reason)
        self.part = part


def parse_trigger(payload: bytes) -> str | int:
    """The id of a trigger message ``{"id": <part id>}``, with its JSON type (string or integer, 1-64 characters).

    The shipped ``trigger.schema.json`` (``TriggerMessage``) describes what this accepts; a test keeps them equal.

    Raises:
        BadTrigger: Oversized, too deeply nested, not JSON, not an object, missing/invalid id, or unknown fields.
    """
    try:
        message = load_json(payload, MAX_TRIGGER_BYTES, "trigger payload")
    except ValueError as exc:
        raise BadTrigger(str(exc)) from None
    if not isinstance(message, dict):
        raise BadTrigger('trigger payload must be a JSON object like {"id": "part-42"}')
    candidate = message.get("id")
    readable = candidate if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) else None
    unknown = set(message) - {"id"}
    if unknown:
        raise BadTrigger(f"trigger payload has unknown field(s) {sorted(unknown)}", readable)
    try:
        return check_trigger_id(candidate)
    except ValueError as exc:
        raise BadTrigger(str(exc), readable) from None


def check_trigger_id(part: object) -> str | int:
    """A valid trigger id, unchanged: a string or integer of 1-64 characters (the rule of every trigger source).

    Raises:
        ValueError: Anything else.
    """
    if isinstance(part, bool) or not isinstance(part, (str, int)) or not 0 < len(str(part)) <= 64:
        raise ValueError("trigger 'id' must be a string or integer of 1-64 characters")
    return part


Outcome = TriggerErrorKind


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
    """Whoever answers a trigger: an OPC UA ``Trigger`` call waiting for it, or the MQTT answer (ERROR when lost).

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
    """A trigger waiting for its frame: the part id, when it was sent at the earliest (epoch s), who answers it."""

    id: str | int
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
        self._closed: str | None = None
        self.accepted = 0
        self.rejected = 0
        self.dropped = 0
        self.expired = 0

    def push(
        self, part_id: str | int, received_ts: float, reply: TriggerReply | None = None, now: float | None = None
    ) -> Trigger | None:
        """Queue a trigger (the oldest is dropped beyond ``max_pending``); ``reply`` hears what becomes of it.

        ``received_ts`` is when it was sent at the earliest; with ``now``, one already older than ``timeout_s``
        (it waited at the broker while the station was away; 0: for an unknown time) expires at once.

        Returns:
            The queued trigger, or None when it expired on arrival or the station is stopping.
        """
        if now is not None and now - received_ts > self.timeout_s:
            self._expire_on_arrival(part_id, received_ts, reply, now)
            return None
        dropped = queued = None
        with self._lock:
            closed = self._closed
            if closed is None:
                queued = Trigger(part_id, received_ts, reply)
                self._pending.append(queued)
                self.accepted += 1
                if len(self._pending) > self.max_pending:
                    dropped = self._pending.popleft()
                    self.dropped += 1
        if closed is not None and reply is not None:  # the station is stopping: nothing will answer it
            reply.lost(TriggerRejected("stopping", closed))
        if dropped is not None:
            reason = f"dropped: {self.max_pending} triggers waiting for a frame (camera too slow?)"
            self._log.warning("dropped", "trigger %s %s", dropped.id, reason)
            if dropped.reply is not None:
                dropped.reply.lost(TriggerRejected("dropped", reason))
        return queued

    def _expire_on_arrival(self, part_id: str | int, sent: float, reply: TriggerReply | None, now: float) -> None:
        with self._lock:
            self.accepted += 1
            self.expired += 1
        if sent <= 0:
            reason = "expired: it waited at the broker from before the station started (for an unknown time)"
        else:
            reason = f"expired: it waited at the broker while the station was away (up to {now - sent:.1f} s)"
        self._log.warning("expired on arrival", "trigger %s %s", part_id, reason)
        if reply is not None:
            reply.lost(TriggerRejected("expired", reason))

    def close(self, reason: str) -> None:
        """The station stops: every waiting trigger hears it will get no verdict (``stopping``)."""
        with self._lock:
            self._closed = reason
            waiting, self._pending = list(self._pending), deque()
        for part in waiting:
            if part.reply is not None and not part.reply.withdrawn:
                part.reply.lost(TriggerRejected("stopping", reason))

    def reject(self) -> None:
        """Count a malformed trigger."""
        with self._lock:
            self.rejected += 1

    def take_for(self, frame_ts: float) -> Trigger | None:
        """The oldest trigger that this frame answers (captured at or after the trigger), if any."""
        with self._lock:
            expired = self._expire_locked(frame_ts)
            found = self._pending.popleft() if self._pending and frame_ts >= self._pending[0].received_ts else None
        self._tell_expired(expired)
        return found

    def take_bound(self, trigger: object, frame_ts: float) -> Trigger | None:
        """The trigger a camera bound to its frame (software trigger), if it still waits.

        Triggers queued before it are answered ``expired`` now: the camera takes frames in trigger order, so
        theirs were lost on the way and none will come.
        """
        lost: list[Trigger] = []
        with self._lock:
            expired = self._expire_locked(frame_ts)
            if trigger not in self._pending:
                found = None
            else:
                while self._pending[0] is not trigger:
                    lost.append(self._pending.popleft())
                found = self._pending.popleft()
                self.expired += len(lost)
        self._tell_expired(expired)
        self._tell_expired(lost, "expired: the camera lost the frame it took for it (see camera counters)")
        return found

    def cancel(self, trigger: Trigger) -> bool:
        """Take back a queued trigger that cannot be served (the camera refused to fire); False if gone."""
        with self._lock:
            try:
                self._pending.remove(trigger)
            except ValueError:
                return False
            self.accepted -= 1
        return True

    def waiting(self, trigger: object) -> bool:
        """Whether ``trigger`` still waits for its frame (not answered, dropped or expired meanwhile)."""
        with self._lock:
            return trigger in self._pending

    def give_up(self, trigger: object, reason: str) -> None:
        """The camera will take no frame for ``trigger``: answer it ``expired`` now with ``reason``, if it waits."""
        with self._lock:
            try:
                self._pending.remove(trigger)
            except ValueError:
                return
            self.expired += 1
        self._tell_expired([trigger], f"expired: {reason}")

    def expire(self, now: float) -> None:
        """Answer the triggers that waited longer than ``timeout_s`` (called while no frame comes)."""
        with self._lock:
            expired = self._expire_locked(now)
        self._tell_expired(expired)

    def _expire_locked(self, now: float) -> list[Trigger]:
        """Pop the triggers older than ``timeout_s`` or withdrawn by their caller; the first kind to be told."""
        expired: list[Trigger] = []
        withdrawn = 0
        while self._pending and (
            now - self._pending[0].received_ts > self.timeout_s
            or (self._pending[0].reply is not None and self._pending[0].reply.withdrawn)
        ):
            old = self._pending.popleft()
            if old.reply is not None and old.reply.withdrawn:
                withdrawn += 1  # its caller already gave up (and was told so)
            else:
                expired.append(old)
        self.expired += len(expired) + withdrawn
        return expired

    def _tell_expired(self, expired: list[Trigger], reason: str = "") -> None:
        if not expired:
            return
        reason = reason or f"expired: no frame within {self.timeout_s:.1f} s of it"
        self._log.warning("expired", "trigger %s %s (%d so far)", expired[-1].id, reason, self.expired)
        for old in expired:
            if old.reply is not None:
                old.reply.lost(TriggerRejected("expired", reason))


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
