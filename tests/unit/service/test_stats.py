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
