"""The console-cost bench's pure parts: pass order, SSE counting, the p99 ratio against the 5 % bound, its table.

The measurement itself (daemon, console, mosquitto) runs in ``edge-ad bench --e2e-console``; no timing is asserted.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest

from edge_ad.bench.console_cost import (
    INSTALL_HINT,
    bench_console_cost,
    console_cost_markdown,
    count_sse,
    p99_ratio,
    pass_order,
)
from edge_ad.cli import main
from edge_ad.errors import ConfigError


def test_passes_alternate_starting_without_the_console():
    assert pass_order(2) == [False, True, False, True]
    with pytest.raises(ValueError, match="at least 1"):
        pass_order(0)


def test_sse_events_are_counted_by_kind_once_their_data_arrived():
    lines = ["retry: 2000", "", "event: state", 'data: {"a":1}', "", ": keepalive", "", "event: verdict",
             'data: {"seq":1}', "", "event: verdict", 'data: {"seq":2}', "", "event: verdict"]  # fmt: skip
    counts: dict[str, int] = {}
    count_sse(iter(lines), counts)
    assert counts == {"state": 1, "verdict": 2, "keepalive": 1}  # the last verdict never got its data line


def test_sse_counting_stops_at_the_first_line_after_stop():
    stop = threading.Event()
    counts: dict[str, int] = {}

    def lines():
        yield from ("event: verdict", "data: {}")
        stop.set()
        yield from ("event: verdict", "data: {}")

    count_sse(lines(), counts, stop)
    assert counts == {"verdict": 1}


@pytest.mark.parametrize(
    ("scale", "met", "resolved"),
    [
        (1.0, True, False),  # the same latencies: ratio 1, the interval reaches past 1.05
        (1.03, True, False),  # 3 % slower: within the bound
        (1.5, False, True),  # 50 % slower: over the bound, clearly
        (0.5, True, True),  # faster with the console (noise): met
    ],
)
def test_p99_ratio_judges_the_five_percent_bound(scale, met, resolved):
    without = np.random.default_rng(1).gamma(4.0, 2.0, 600)
    got = p99_ratio(without, without * scale)
    assert got["p99_ratio"] == pytest.approx(scale) and got["p50_ratio"] == pytest.approx(scale)
    low, high = got["p99_ratio_ci"]
    assert low <= got["p99_ratio"] <= high
    assert (got["met"], got["resolved"]) == (met, resolved)


def test_p99_ratio_needs_both_kinds_of_pass():
    with pytest.raises(ValueError, match="both kinds"):
        p99_ratio(np.array([]), np.array([1.0]))


def test_markdown_shows_the_ratio_events_and_console_memory():
    events = {"live-page": {"verdict": 300, "state": 40}, "second-page": {"verdict": 300}}
    cost = {"variant": "fp32", "pairs": 1, "block_s": 20.0, "fps": 20.0, "clients": 2, "pair_p99_ratios": [1.016],
            "a_p99_spread": 1.0,
            "console_peak_rss_mb": 98.4, "console_cpu_share": 0.031,
            **p99_ratio(np.linspace(5, 9, 300), np.linspace(5, 9, 300) * 1.02),
            "passes": [{"console": False, "model_p50_ms": 7.0, "model_p99_ms": 8.96, "e2e_p99_ms": 11.0},
                       {"console": True, "model_p50_ms": 7.1, "model_p99_ms": 9.1, "e2e_p99_ms": 11.2, "load_1min": 1.5,
                        "steal_ms": 12.0, "events": events}]}  # fmt: skip
    text = "\n".join(console_cost_markdown(cost))
    assert "p99 with ÷ without: **1.020**" in text and "bound ≤ 1.05: met" in text
    assert "Each B block ÷ the A block before it: 1.02 (median 1.02); the A blocks alone spread 1.00×" in text
    assert "2 blocks A B … of 20 s" in text and "`console.cpu: idle`" in text
    assert "| with console + live pages (B) |" in text and "| 98 | 3.1 |" in text
    assert "| 2 | B | 7.10 | 9.10 | 11.20 | 1.50 | 12 | 300 / 40 / 0, 300 / 0 / 0 |" in text


def test_markdown_of_a_skipped_comparison_gives_the_install_hint():
    text = "\n".join(console_cost_markdown({"skipped": f"not installed: {INSTALL_HINT}"}))
    assert "Console cost: skipped" in text and "edge_ad[console]" in text


def test_console_comparison_needs_end_to_end_passes(tmp_path, capsys):
    assert main(["bench", "--bundle", str(tmp_path), "--e2e", "0", "--e2e-console", "2"]) == 2
    assert "--e2e-console compares end-to-end passes" in capsys.readouterr().err


def test_without_the_console_extra_the_comparison_is_skipped_with_the_hint(monkeypatch, tmp_path):
    import edge_ad.console

    def missing() -> None:
        raise ConfigError("the console needs the console extra (fastapi is missing)")

    monkeypatch.setattr(edge_ad.console, "require_console", missing)
    got = bench_console_cost(tmp_path / "no-bundle", [], "fp32")  # returns before touching the bundle or images
    assert got == {"skipped": f"the console extra or httpx is not installed: {INSTALL_HINT}"}


@pytest.mark.parametrize("browser, cpu", [("firefox", "idle"), ("chromium", "low")])
def test_an_unknown_browser_or_priority_is_refused(tmp_path, browser, cpu):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with pytest.raises(ValueError, match=re.escape("httpx|chromium and normal|idle")):
        bench_console_cost(tmp_path / "no-bundle", [], "fp32", browser=browser, browser_cpu=cpu)


def test_markdown_names_the_browser_and_its_priority():
    base = {"variant": "fp32", "pairs": 1, "block_s": 20.0, "fps": 20.0, "clients": 1, "pair_p99_ratios": [1.0],
            "a_p99_spread": 1.0, "console_peak_rss_mb": 150.0, "console_cpu_share": 0.02,
            **p99_ratio(np.linspace(5, 9, 300), np.linspace(5, 9, 300)),
            "passes": [{"console": True, "model_p50_ms": 7.0, "model_p99_ms": 9.0, "e2e_p99_ms": 11.0,
                        "events": {"live-page": {"verdict": 410}}}]}  # fmt: skip
    chromium = "\n".join(console_cost_markdown({**base, "browser": "chromium", "browser_cpu": "idle"}))
    assert "the live page open in a headless Chromium at idle priority" in chromium and "| 410 / 0 / 0 |" in chromium
    httpx = "\n".join(console_cost_markdown({**base, "browser": "httpx", "browser_cpu": "normal", "clients": 2}))
    assert "2 logged-in httpx clients at normal priority streaming `/events`" in httpx


def test_pairs_the_host_disturbed_are_left_out_whole():
    from edge_ad.bench.console_cost import STEAL_LIMIT, steal_limit_ms, undisturbed_pairs

    limit_ms = steal_limit_ms(20.0)
    assert limit_ms == STEAL_LIMIT * 20.0 * (os.cpu_count() or 1) * 1000
    rows = [{"console": i % 2 == 1, "steal_ms": 10.0, "n": i} for i in range(6)]
    rows[3]["steal_ms"] = limit_ms + 1  # the B block of pair 2
    kept, dropped = undisturbed_pairs(rows, 20.0)
    assert dropped == [2] and [r["n"] for r in kept] == [0, 1, 4, 5]
    for row in rows:
        row["steal_ms"] = limit_ms * 2
    assert undisturbed_pairs(rows, 20.0) == (rows, [])  # all disturbed: nothing to compare without them
