"""Durable, bounded, ordered outbox for QoS 1 messages (SQLite in the state directory).

Every verdict is written here before it is handed to the broker and deleted only when the
broker acknowledges it (PUBACK). While the broker is unreachable messages accumulate (oldest
dropped past ``max_messages``, and counted); after a reconnect, and after a daemon restart, they
are sent oldest first. Delivery is at-least-once: a message in flight when the connection drops is
sent again, so consumers de-duplicate by ``seq``. The last sequence number lives here too, so a
restarted daemon continues the sequence instead of reusing numbers.

A database that cannot be written (disk full, I/O error) never stops the station: new messages
are kept in memory (the newest ``memory_messages``; older ones dropped and counted), :attr:`alarm`
says so, and they move to disk, in order and with the same ids, as soon as a write succeeds again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_ad.config import MqttConfig
from edge_ad.errors import ConfigError, first_line
from edge_ad.guard import RateLimitedLog

__all__ = ["Spool", "SpooledMessage", "open_spool"]

logger = logging.getLogger(__name__)

SpooledMessage = tuple[int, str, bytes, int, bool]  # (id, topic, payload, qos, retain)
RETRY_S = 1.0  # a failing database is tried again at most this often


class Spool:
    """SQLite-backed FIFO of outgoing messages plus the verdict sequence counter.

    Args:
        path: Database file (created with its parent directory).
        max_messages: Bound on stored messages; the oldest are dropped beyond it.
        memory_messages: Bound on messages held in memory while the database cannot be written.
        on_alarm: Called (outside the lock) whenever :attr:`alarm` is raised or cleared.
    """

    def __init__(
        self,
        path: Path,
        max_messages: int = 100_000,
        memory_messages: int = 10_000,
        on_alarm: Callable[[], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.memory_messages = memory_messages
        self.on_alarm = on_alarm
        self.dropped = 0
        self.alarm: str | None = None
        self._lock = threading.Lock()
        self._memory: dict[int, SpooledMessage] = {}  # id -> message, oldest first (not on disk yet)
        self._memory_seq = 0
        self._undeleted: set[int] = set()  # acknowledged, but the database refused the delete
        self._retry_at = 0.0
        self._failure = ""
        self._log = RateLimitedLog(logger)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._next_id = (int(row[0]) if row else 0) + 1  # ids are ours, so a message keeps its id on disk

    def append(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, seq: int | None = None) -> int:
        """Store a message (and, atomically, the sequence number it carries); returns its id.

        Never raises for a database that cannot be written: the message is then kept in memory.
        """
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            self._memory[ident] = (ident, topic, payload, qos, retain)
            if seq is not None:
                self._memory_seq = seq
            if len(self._memory) > 1 and time.monotonic() < self._retry_at:
                stored, overflow = False, 0
            else:
                stored, overflow = self._store_memory()
            lost = self._bound_memory() if not stored else 0
            changed = self._set_alarm(stored)
        if overflow > 0:
            logger.warning("spool full (%d messages): dropped the %d oldest", self.max_messages, overflow)
        if lost:
            self._log.warning(
                "memory",
                "spool: verdicts held in memory dropped past %d (%d so far)",
                self.memory_messages,
                self.dropped,
            )
        if changed and self.on_alarm is not None:
            self.on_alarm()
        return ident

    def _store_memory(self) -> tuple[bool, int]:
        """Move every in-memory message to disk in one transaction: (done, oldest dropped for the bound)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                [(i, t, p, q, int(r)) for i, t, p, q, r in self._memory.values()],
            )
            if self._memory_seq:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (self._memory_seq,))
            if self._undeleted:
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in self._undeleted])
            overflow = self._count() - self.max_messages
            if overflow > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (overflow,)
                )
                self.dropped += overflow
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if self._db.in_transaction:  # a failed COMMIT has already rolled back (SQLITE_FULL)
                self._db.execute("ROLLBACK")
            self._retry_at = time.monotonic() + RETRY_S
            self._failure = first_line(exc)
            return False, 0
        self._memory.clear()
        self._undeleted.clear()
        return True, overflow

    def _bound_memory(self) -> int:
        lost = 0
        while len(self._memory) > self.memory_messages:
            del self._memory[next(iter(self._memory))]
            lost += 1
        self.dropped += lost
        return lost

    def _set_alarm(self, stored: bool) -> bool:
        """Raise or clear the alarm after a write attempt; True if it changed."""
        old = self.alarm
        if stored:
            self.alarm = None
        else:
            self.alarm = (
                f"spool database {self.path} cannot be written ({self._failure}): verdicts are held in memory "
                f"(the newest {self.memory_messages}, older ones dropped); free space on the state directory"
            )
        if (old is None) != (self.alarm is None):
            if self.alarm:
                logger.error("%s", self.alarm)
            else:
                logger.info("spool database writable again: verdicts held in memory are on disk")
            return True
        return False

    def pending(self, after_id: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """Stored messages with id > ``after_id``, oldest first (disk, then memory)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit + len(self._undeleted)),
            ).fetchall()
            out = [(int(i), t, bytes(p), int(q), bool(r)) for i, t, p, q, r in rows if i not in self._undeleted]
            out += [m for i, m in self._memory.items() if i > after_id][: max(0, limit - len(out))]
        return out[:limit]

    def ack(self, message_id: int) -> None:
        """Forget a message the broker acknowledged."""
        with self._lock:
            if self._memory.pop(message_id, None) is not None:
                return
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            except sqlite3.DatabaseError:  # deleted with the next successful write
                self._undeleted.add(message_id)

    def last_seq(self) -> int:
        """The last verdict sequence number ever spooled (0 for a new station)."""
        with self._lock:
            return max(self._stored_seq(), self._memory_seq)

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def in_memory(self) -> int:
        """Messages held in memory because the database cannot be written."""
        with self._lock:
            return len(self._memory)

    def __len__(self) -> int:
        with self._lock:
            return self._count() - len(self._undeleted) + len(self._memory)

    def close(self) -> None:
        """Write what is held in memory one last time, then close the database."""
        with self._lock:
            if self._memory and not self._store_memory()[0]:
                self.dropped += len(self._memory)
                logger.error(
                    "spool: %d verdicts held in memory are lost at shutdown (%s)", len(self._memory), self._failure
                )
            if self._memory_seq and self._memory_seq > self._stored_seq():
                self._save_seq()  # else a restart would reuse sequence numbers consumers have seen
            self._db.close()

    def _stored_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def _save_seq(self) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (self._memory_seq,))
        except sqlite3.DatabaseError as exc:
            logger.error(
                "spool: last sequence number %d not saved (%s); after a restart seq continues from %d",
                self._memory_seq,
                first_line(exc),
                self._stored_seq(),
            )


def open_spool(state_dir: Path, config: MqttConfig, on_alarm: Callable[[], None] | None = None) -> Spool:
    """The station's spool (``<state_dir>/spool.sqlite``) with the bounds from the ``mqtt`` section.

    Raises:
        ConfigError: The database cannot be opened or created (one line, with what to do).
    """
    path = state_dir / "spool.sqlite"
    try:
        return Spool(path, config.spool_max_messages, config.spool_memory_messages, on_alarm)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"service.state_dir: cannot open the spool {path} ({first_line(exc)}); free space there, "
            "or move a damaged file aside (its unsent verdicts are lost)"
        ) from None
