"""The runtime benchmark runs the real engine on a bundle (numbers are for BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import json

import pytest

from edge_ad.bench.runtime import bench_runtime, device_variant, runtime_markdown
from edge_ad.bundle import load_bundle
from edge_ad.cli import main


def test_bench_measures_latency_and_pipelined_throughput_per_variant(tiny_models):
    result = bench_runtime(load_bundle(tiny_models / "tiny"), frames=30, requests=(2,))
    assert result["frames"] == 30 and result["machine"]["cores"] >= 1
    (row,) = result["rows"]  # the tiny bundle ships FP32 only
    assert row["variant"] == "fp32" and 0 < row["p50_ms"] <= row["p99_ms"] and row["fps"] > 0
    assert set(row["async"][2]) == {"fps", "vs_latency_mode", "vs_single_request"}
    table = runtime_markdown(result)
    assert "| fp32 |" in table and "2 req fps" in table


def test_bench_cli_writes_json_and_needs_a_bundle(tiny_models, tmp_path, capsys):
    assert main(["bench", "--bundle", str(tiny_models / "tiny"), "--frames", "12", "--requests", "2", "--e2e", "0",
                 "--json", str(tmp_path / "b.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["variant"] == "fp32"
    assert "| fp32 |" in capsys.readouterr().out
    assert main(["bench"]) == 2
    assert "give --bundle" in capsys.readouterr().err
    assert main(["bench", "--bundle", str(tiny_models / "tiny"), "--anomalib"]) == 2
    assert "--anomalib trains anomalib's model on --data DIR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("p50", "expected"),
    [
        ({"fp32": 10.0, "int8": 9.4}, "int8"),  # at least 5 % faster: auto runs INT8
        ({"fp32": 10.0, "int8": 9.8}, "fp32"),  # a gain within noise is no gain
        ({"fp32": 6.0, "int8": 7.8}, "fp32"),
        ({"fp32": 6.0}, "fp32"),  # INT8 refused by the gate
        ({"int8": 6.0}, "int8"),
    ],
)
def test_the_device_variant_is_the_one_auto_would_run(p50, expected):
    rows = [{"variant": name, "p50_ms": ms} for name, ms in p50.items()]
    assert device_variant(rows) == expected
