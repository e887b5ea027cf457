"""The console-cost bench with a real headless Chromium: an idle browser really runs idle, and the live page streams.

The numbers themselves live in BENCHMARKS.md (never timed here); this checks the measurement can be
trusted: every process the idle browser starts is ``SCHED_IDLE`` (and a normal one is not), and a run
with the live page open counts the verdicts the page showed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")  # the console extra
pytest.importorskip("httpx")

from edge_ad.bench.browser import browser_missing, headless_chromium
from edge_ad.bench.console_cost import bench_console_cost, console_cost_markdown
from tests.support.tiny_bundle import good_image, write_frames


def _children(pid: int) -> set[int]:
    """Every process below ``pid`` (from each process's parent in ``/proc/<pid>/stat``)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found.update(kids)
        todo.extend(kids)
    return found


def _policies(driver) -> dict[int, int]:
    pids = {driver.service.process.pid} | _children(driver.service.process.pid)
    policies = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():  # every thread: Linux schedules threads
            try:
                policies[int(task.name)] = os.sched_getscheduler(int(task.name))
            except OSError:  # a thread that ended meanwhile
                continue
    return policies


@pytest.fixture(autouse=True)
def _need_browser():
    if missing := browser_missing():
        pytest.fail(missing, pytrace=False)


@pytest.mark.parametrize("idle", [True, False])
def test_an_idle_browser_runs_every_process_and_thread_idle(idle):
    with headless_chromium(idle=idle) as driver:
        driver.get("data:text/html,<p>edge_ad</p>")
        policies = _policies(driver)
    assert len(policies) >= 10, f"the driver, the browser and its renderer: {len(policies)} threads only"
    want = os.SCHED_IDLE if idle else os.SCHED_OTHER
    assert set(policies.values()) == {want}, policies


def test_console_cost_with_the_live_page_in_a_real_browser(tiny_models, tmp_path):
    frames = write_frames(tmp_path / "frames", [good_image(seed) for seed in range(8)])
    cost = bench_console_cost(tiny_models / "tiny", sorted(frames.glob("*.png")), "fp32", block_s=2.0, pairs=1,
                              settle_s=1.0, browser="chromium", browser_cpu="idle")  # fmt: skip
    assert "skipped" not in cost, cost
    without, with_console = cost["passes"]
    assert not without["console"] and with_console["console"]
    shown = with_console["events"]["live-page"]["verdict"]
    # the page is written every 2 s: its newest row may be up to 2 s old at either end of the 2.5 s
    assert 0 < shown <= 20 * (2.5 + 2 * 2.0), f"the live page showed {shown} verdicts in a 2 s block at 20 fps"
    assert cost["p99_ratio"] > 0 and cost["console_peak_rss_mb"] > 20
    text = "\n".join(console_cost_markdown(cost))
    assert "the live page open in a headless Chromium at idle priority" in text
