"""Smoke runs of ``edge-ad bench fleet``: five real daemons, a private mosquitto (or two bridged), well formed."""

from __future__ import annotations

import json

import pytest

from edge_ad.bench.fleet import bench_fleet
from tests.support.station import edge_ad

pytestmark = pytest.mark.integration

KEYS = {
    "stations", "fps", "seconds", "bridged", "consumers", "wave", "bundle", "window_s", "verdicts", "latency_ms",
    "cpu_pct", "rss_kb", "per_station", "startup_s",
}  # fmt: skip


def _well_formed(run: dict, stations: int) -> None:
    assert run.keys() >= KEYS
    v = run["verdicts"]
    assert v["produced"] == v["received"] > 0, v
    assert v["lost"] == 0 and v["duplicates"] == 0, v
    lat = run["latency_ms"]
    assert lat["count"] > 0 and 0 <= lat["p50"] <= lat["p99"] <= lat["max"], lat
    rss = run["rss_kb"]
    assert len(rss["stations"]) == stations and all(kb > 0 for kb in rss["stations"].values())
    assert rss["sum"] == sum(rss["stations"].values()) and rss["max"] == max(rss["stations"].values())
    cpu = run["cpu_pct"]
    assert all(isinstance(p, float) and p >= 0 for p in cpu["brokers"].values())
    assert cpu["broker_total"] >= 0 and cpu["daemons_total"] > 0
    per = run["per_station"]
    assert 0 < per["verdicts_per_s"] <= per["msgs_per_s"] and per["bytes_per_s"] > per["verdict_bytes"] > 0
    assert 0 < run["startup_s"]["p50"] <= run["startup_s"]["max"]


def test_bench_fleet_cli_prints_a_well_formed_table_and_times_a_rollout(tiny_models, tmp_path):
    out = tmp_path / "fleet.json"
    result = edge_ad(
        "bench", "fleet", "--bundle", str(tiny_models / "tiny"), "--stations", "5", "--seconds", "8",
        "--rollout", "--canary", "2", "--soak", "3s", "--json", str(out), timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = json.loads(out.read_text())
    _well_formed(run, 5)  # no verdict lost while every station swapped its model
    rollout = run["rollout"]
    assert rollout["exit"] == 0 and rollout["on_version"] == 5 and rollout["canaries"] == 2, rollout
    assert 0 < rollout["seconds"] < 120 and "all stations passed" in "\n".join(rollout["report"])
    assert "Rollout to 5 stations: " in result.stdout and "every station passed; 5 of 5" in result.stdout
    assert run["consumers"] == 1 and not run["bridged"] and set(run["cpu_pct"]["brokers"]) == {"broker"}
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and table[2].startswith("| 5 | 1 | 1 | ")
    header, row = table[0].split(" | "), table[2].split(" | ")
    assert len(header) == len(row)
    assert "edge-ad bench fleet --bundle" in result.stdout and "**Command** (" in result.stdout


def test_bench_fleet_bridged_shared_group_gets_each_verdict_once(tiny_models):
    run = bench_fleet(tiny_models / "tiny", 5, seconds=6, bridged=True, consumers=3)
    _well_formed(run, 5)
    assert set(run["cpu_pct"]["brokers"]) == {"stations", "consumers"}
    per_consumer = run["verdicts"]["per_consumer"]
    assert len(per_consumer) == 3 and all(n > 0 for n in per_consumer)
    assert sum(per_consumer) == run["verdicts"]["received"], "a verdict went to two members of the group"
