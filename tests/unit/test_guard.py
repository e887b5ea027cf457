from __future__ import annotations

import logging

from edge_ad.guard import Guard


def test_the_guard_counts_logs_once_per_interval_and_alarms_once_per_place(caplog):
    alarms = []
    guard = Guard(on_alarm=lambda: alarms.append(guard.alarm), interval_s=60)

    def fails(n: int) -> int:
        raise OSError(f"disk gone {n}")

    with caplog.at_level(logging.ERROR, logger="edge_ad.guard"):
        assert [guard.call("evidence", fails, n) for n in range(3)] == [None, None, None]
        assert guard.call("evidence", lambda: 7) == 7
    assert guard.errors == {"evidence": 3} and len(alarms) == 1
    assert alarms[0] == {"alarm": True, "message": "evidence: OSError: disk gone 0", "errors": {"evidence": 1}}
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None  # one traceback, then counts
    assert guard.alarm["message"] == "evidence: OSError: disk gone 2"


def test_a_failing_alarm_callback_is_logged_not_raised(caplog):
    guard = Guard(on_alarm=lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="edge_ad.guard"):
        assert guard.wrap("reload", lambda: [].pop())() is None
    assert "reporting the error in reload failed" in caplog.text
    assert Guard().alarm is None
