"""The runtime benchmark runs the real engine on a bundle (numbers are for BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import json

from edge_ad.bench.runtime import bench_runtime, runnable_variants, runtime_markdown
from edge_ad.bundle import load_bundle
from edge_ad.cli import main


def test_bench_measures_latency_and_pipelined_throughput_per_variant(tiny_models):
    result = bench_runtime(load_bundle(tiny_models / "tiny"), frames=30, requests=(2,))
    assert result["frames"] == 30 and result["machine"]["cores"] >= 1
    rows = result["rows"]  # the tiny bundle ships FP32 only; bf16/f16 where this CPU has them natively
    assert [r["variant"] for r in rows] == runnable_variants(load_bundle(tiny_models / "tiny"), "CPU")
    row = rows[0]
    assert row["variant"] == "fp32" and row["precision"] == "f32"
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["fps"] > 0
    assert result["plugin_default_precision"] in {"f32", "bf16"} and "cpu_flags" in result["machine"]
    assert set(row["async"][2]) == {"fps", "vs_latency_mode", "vs_single_request"}
    table = runtime_markdown(result)
    assert "| fp32 | f32 |" in table and "2 req fps" in table and "plugin would run float layers in" in table


def test_bench_cli_writes_json_and_needs_a_bundle(tiny_models, tmp_path, capsys):
    assert main(["bench", "--bundle", str(tiny_models / "tiny"), "--frames", "12", "--requests", "2", "--e2e", "0",
                 "--json", str(tmp_path / "b.json")]) == 0  # fmt: skip
    written = json.loads((tmp_path / "b.json").read_text())
    assert (
        written["rows"][0]["variant"] == "fp32"
        and written["commissioning"]["chosen"] in written["commissioning"]["candidates"]
    )
    out = capsys.readouterr().out
    assert "| fp32 | f32 |" in out and f"`auto` runs **{written['commissioning']['chosen']}**" in out
    assert main(["bench"]) == 2
    assert "give --bundle" in capsys.readouterr().err
    assert main(["bench", "--bundle", str(tiny_models / "tiny"), "--anomalib"]) == 2
    assert "--anomalib trains anomalib's model on --data DIR" in capsys.readouterr().err
