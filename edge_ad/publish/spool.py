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

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_ad.config import MqttConfig
from edge_ad.errors import ConfigError, first_line
from edge_ad.guard import RateLimitedLog

__all__ = ["SPOOL_FILES", "SeqFile", "Spool", "SpooledMessage", "check_spool", "open_spool"]

logger = logging.getLogger(__name__)

SpooledMessage = tuple[int, str, bytes, int, bool]  # (id, topic, payload, qos, retain)
RETRY_S = 1.0  # a failing database is tried again at most this often
SPOOL_NAME = "spool.sqlite"
SPOOL_FILES = (SPOOL_NAME, f"{SPOOL_NAME}-wal", f"{SPOOL_NAME}-shm", f"{SPOOL_NAME}.seq")  # in the state directory


class SeqFile:
    """The last sequence number in a small file rewritten in place, next to the database.

    A write inside a file's existing size needs no new block, so on a full filesystem (ext4, xfs,
    tmpfs) the number still reaches the disk when the database cannot take a row: a restart then
    never reuses a number consumers have seen (they de-duplicate by it).
    """

    SIZE = 24

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.value = 0
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            text = os.pread(self._fd, self.SIZE, 0).decode(errors="replace").strip()
            self.value = int(text) if text.isdigit() else 0
            if os.fstat(self._fd).st_size < self.SIZE:
                self.write(self.value)
        except OSError as exc:
            logger.warning("spool: %s unusable (%s); the sequence lives in the database only", path, exc.strerror)

    def write(self, seq: int) -> None:
        """Record ``seq`` (best effort: the database has it too)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._fd, f"{seq:>{self.SIZE - 1}d}\n".encode(), 0)
                self.value = seq

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        self._db.execute("PRAGMA wal_autocheckpoint=256")  # ~1 MB of WAL, and the file is cut back to 1 MB:
        self._db.execute("PRAGMA journal_size_limit=1048576")  # the spool must not fill a small disk by itself
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._next_id = (int(row[0]) if row else 0) + 1  # ids are ours, so a message keeps its id on disk
        self._seq_file = SeqFile(path.with_name(path.name + ".seq")) if str(path) != ":memory:" else None

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
                if self._seq_file is not None:
                    self._seq_file.write(seq)
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
                self._write_seq()
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

    def last_id(self) -> int:
        """The id of the newest message ever stored (0 for a new spool); later messages get larger ids."""
        with self._lock:
            return self._next_id - 1

    def last_seq(self) -> int:
        """The last verdict sequence number ever spooled (0 for a new station)."""
        with self._lock:
            on_file = self._seq_file.value if self._seq_file is not None else 0
            return max(self._stored_seq(), self._memory_seq, on_file)

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
            if self._seq_file is not None:
                self._seq_file.close()

    def _stored_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def _write_seq(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (self._memory_seq,))

    def _save_seq(self) -> None:
        try:
            self._write_seq()
        except sqlite3.DatabaseError as exc:
            logger.warning(
                "spool: last sequence number %d not saved in the database (%s); %s has it",
                self._memory_seq,
                first_line(exc),
                self._seq_file.path if self._seq_file is not None else "nothing else",
            )


def open_spool(state_dir: Path, config: MqttConfig, on_alarm: Callable[[], None] | None = None) -> Spool:
    """The station's spool (``<state_dir>/spool.sqlite``) with the bounds from the ``mqtt`` section.

    Raises:
        ConfigError: The database cannot be opened or created (one line, with what to do).
    """
    path = state_dir / SPOOL_NAME
    for part in (state_dir / name for name in SPOOL_FILES):
        if part.exists() and not os.access(part, os.W_OK):
            raise ConfigError(
                f"service.state_dir: {part} is not writable by this user (owner uid {part.stat().st_uid}); "
                f"give the service user its state directory: chown -R edge-ad:edge-ad {state_dir}"
            )
    try:
        return Spool(path, config.spool_max_messages, config.spool_memory_messages, on_alarm)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"service.state_dir: cannot open the spool {path} ({first_line(exc)}); free space there, "
            "or move a damaged file aside (its unsent verdicts are lost)"
        ) from None


def check_spool(state_dir: Path) -> None:
    """Refuse an existing spool that ``run`` could not open (not a database, a folder); creates nothing.

    Raises:
        ConfigError: One line naming the file and what to do.
    """
    path = state_dir / SPOOL_NAME
    if not path.exists():
        return
    try:
        if not path.is_file():
            raise sqlite3.DatabaseError("not a file")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"service.state_dir: {path} is not a spool database ({first_line(exc)}); move it aside "
            "(its unsent verdicts are lost) and start again"
        ) from None
