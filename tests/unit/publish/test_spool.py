from __future__ import annotations

from edge_ad.publish.spool import Spool


def test_fifo_ack_and_resume_after_reopen(tmp_path):
    path = tmp_path / "state" / "spool.sqlite"
    spool = Spool(path)
    ids = [spool.append("t/verdict", f"m{i}".encode(), seq=i + 1) for i in range(5)]
    assert [p for _, _, p, _, _ in spool.pending()] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [i for i, *_ in spool.pending(after_id=ids[2])] == ids[3:]
    spool.ack(ids[0])
    spool.ack(ids[2])
    spool.close()
    reopened = Spool(path)  # a restarted daemon
    assert [p for _, _, p, _, _ in reopened.pending()] == [b"m1", b"m3", b"m4"]
    assert reopened.last_seq() == 5
    assert len(reopened) == 3


def test_bound_drops_oldest_and_counts(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_messages=3)
    for i in range(5):
        spool.append("t", str(i).encode(), seq=i + 1)
    assert [p for _, _, p, _, _ in spool.pending()] == [b"2", b"3", b"4"]
    assert spool.dropped == 2 and spool.last_seq() == 5


def test_new_spool_starts_at_zero(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    assert spool.last_seq() == 0 and len(spool) == 0 and spool.pending() == []


def test_full_database_keeps_the_newest_in_memory_with_an_alarm_and_recovers(tmp_path, monkeypatch):
    """Found: a full state filesystem raised "database or disk is full", then "cannot rollback", and the
    daemon exited. Now the newest verdicts wait in memory (bounded, drops counted) and move to disk later."""
    monkeypatch.setattr("edge_ad.publish.spool.RETRY_S", 0.0)
    alarms: list[str | None] = []
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, memory_messages=5, on_alarm=lambda: alarms.append(spool.alarm))
    first = [spool.append("t", b"disk%d" % i, seq=i + 1) for i in range(3)]
    pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
    spool._db.execute(f"PRAGMA max_page_count = {pages}")  # the filesystem is full from here on
    big = [spool.append("t", b"m%d" % i + b"x" * 8192, seq=4 + i) for i in range(8)]  # none fits
    assert spool.alarm is not None and "cannot be written" in spool.alarm and "database or disk is full" in spool.alarm
    assert len(alarms) == 1 and alarms[0] == spool.alarm
    assert spool.dropped == 3 and spool.in_memory == 5 and len(spool) == 8 and spool.last_seq() == 11
    ids = [i for i, *_ in spool.pending(limit=100)]
    assert ids == first + big[3:], "disk first, then the newest in memory, oldest first"
    assert [i for i, *_ in spool.pending(after_id=big[4], limit=2)] == big[5:7]
    spool.ack(big[3])  # the broker took one straight from memory
    assert spool.in_memory == 4
    spool._db.execute("PRAGMA max_page_count = 1000000")  # space is back
    last = spool.append("t", b"after", seq=12)
    assert spool.alarm is None and alarms == [alarms[0], None] and spool.in_memory == 0
    spool.close()
    reopened = Spool(path)  # everything not acknowledged is on disk, with its id, in order
    assert [i for i, *_ in reopened.pending(limit=100)] == [*first, *big[4:], last]
    assert reopened.last_seq() == 12


def test_close_with_a_full_database_still_saves_the_sequence(tmp_path):
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    spool.append("t", b"a", seq=1)
    spool._db.execute(f"PRAGMA max_page_count = {spool._db.execute('PRAGMA page_count').fetchone()[0]}")
    ident = spool.append("t", b"x" * 8192, seq=2)
    spool.ack(ident)  # delivered from memory while the disk was full
    spool.close()
    assert Spool(path).last_seq() == 2, "a restart must not reuse a sequence number consumers have seen"


def test_a_crash_while_the_database_is_full_never_reuses_a_sequence_number(tmp_path):
    """Found by the probe: SIGKILL (or a failed save at SIGTERM) while the disk was full, and the restarted station
    published 3535.. again, numbers consumers had already seen with other verdicts (they de-duplicate by seq)."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    spool.append("t", b"a", seq=1)
    spool._db.execute(f"PRAGMA max_page_count = {spool._db.execute('PRAGMA page_count').fetchone()[0]}")
    for seq in range(2, 50):
        spool.ack(spool.append("t", b"x" * 8192, seq=seq))  # delivered straight from memory
    assert spool.alarm is not None
    restarted = Spool(path)  # no close: the process was killed
    assert restarted.last_seq() == 49
