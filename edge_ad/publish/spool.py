"""Durable, bounded, ordered outbox for QoS 1 messages (SQLite in the state directory).

Every verdict is written here before it is handed to the broker and deleted only when the
broker acknowledges it (PUBACK). While the broker is unreachable messages accumulate (oldest
dropped past ``max_messages``, and counted); after a reconnect, and after a daemon restart, they
are sent oldest first. Delivery is at-least-once: a message in flight when the connection drops is
sent again, so consumers de-duplicate by ``seq``. The last sequence number lives here too, so a
restarted daemon continues the sequence instead of reusing numbers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Spool", "SpooledMessage"]

logger = logging.getLogger(__name__)

SpooledMessage = tuple[int, str, bytes, int, bool]  # (id, topic, payload, qos, retain)


class Spool:
    """SQLite-backed FIFO of outgoing messages plus the verdict sequence counter.

    Args:
        path: Database file (created with its parent directory).
        max_messages: Bound on stored messages; the oldest are dropped beyond it.
    """

    def __init__(self, path: Path, max_messages: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.dropped = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")

    def append(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, seq: int | None = None) -> int:
        """Store a message (and, atomically, the sequence number it carries); returns its id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                    (topic, payload, qos, int(retain)),
                )
                if seq is not None:
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (seq,))
                overflow = self._count() - self.max_messages
                if overflow > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (overflow,)
                    )
                    self.dropped += overflow
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if overflow > 0:
            logger.warning("spool full (%d messages): dropped the %d oldest", self.max_messages, overflow)
        return int(cur.lastrowid)

    def pending(self, after_id: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """Stored messages with id > ``after_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [(int(i), t, bytes(p), int(q), bool(r)) for i, t, p, q, r in rows]

    def ack(self, message_id: int) -> None:
        """Forget a message the broker acknowledged."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))

    def last_seq(self) -> int:
        """The last verdict sequence number ever spooled (0 for a new station)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
