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
