from __future__ import annotations

import pytest

from edge_ad.service.stats import StationStats


def test_snapshot_counts_rates_and_percentiles():
    stats = StationStats(window=4)
    assert stats.snapshot()["fps"] == 0.0 and stats.snapshot()["ng_rate"] == 0.0
    for latency, ng in [(1.0, False), (2.0, True), (3.0, False), (4.0, True), (100.0, True)]:
        stats.add(latency, ng)
    snap = stats.snapshot()
    assert (snap["frames"], snap["ng"]) == (5, 3)
    assert snap["ng_rate"] == pytest.approx(3 / 4)  # over the window of 4
    assert snap["latency_ms"]["p50"] == pytest.approx(3.5) and snap["latency_ms"]["p99"] > 90


def test_drift_alarm_raises_and_clears():
    from edge_ad.service.stats import DriftMonitor

    drift = DriftMonitor(window=5, fraction=0.8)
    changes = [drift.update(s, True, threshold=10.0) for s in [5, 5, 5, 5, 5]]
    assert not any(changes) and not drift.alarm  # median 5 < 8
    assert not drift.update(50.0, False, 10.0), "NG scores do not count"
    changes = [drift.update(9.0, True, 10.0) for _ in range(3)]
    assert changes == [False, False, True] and drift.alarm  # median of the window reaches 9 > 8
    assert drift.status(10.0) == {"alarm": True, "median_ok_score": 9.0, "limit": 8.0}
    changes = [drift.update(4.0, True, 10.0) for _ in range(3)]
    assert changes[-1] and not drift.alarm
