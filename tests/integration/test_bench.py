"""Smoke tests of ``edge-ad bench``: every part runs on a small bundle and its output is well-formed.

No assertion on absolute time: speed is reported in BENCHMARKS.md, never asserted.
"""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest

from edge_ad.bench.runtime import runnable_variants
from edge_ad.bundle import load_bundle
from edge_ad.calibrate.metrics import spearman
from edge_ad.cli import main

pytestmark = pytest.mark.integration


def test_bench_with_accuracy_and_end_to_end_over_mosquitto(exported, dataset, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--bundle", str(exported.bundle), "--frames", "20", "--requests", "2", "--data", str(dataset),
            "--e2e", "40", "--e2e-fps", "40", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    variants = runnable_variants(load_bundle(exported.bundle), "CPU")  # + bf16/f16 where the CPU has them
    assert [row["variant"] for row in result["rows"]] == variants and variants[:2] == ["fp32", "int8"]
    assert {row["variant"]: row["precision"] for row in result["rows"]}["int8"] == "f32"
    acc = result["accuracy"]
    assert acc["test_images"] == 34 and acc["defects"] == 18
    assert set(acc["auroc"]) == set(variants) and all(0.5 < v <= 1 for v in acc["auroc"].values())
    assert set(acc["vs_fp32"]) == set(variants) - {"fp32"}
    assert acc["vs_fp32"]["int8"]["auroc_drop"] == pytest.approx(acc["auroc"]["fp32"] - acc["auroc"]["int8"])
    e2e = result["end_to_end"]
    # end to end runs what 'variant: auto' runs: the commissioned choice on this machine
    assert e2e["received"] == 40 and e2e["variant"] == result["commissioning"]["chosen"]
    assert 0 < e2e["model_p50_ms"] <= e2e["e2e_p50_ms"] <= e2e["e2e_p99_ms"]  # the verdict comes after the frame
    assert 50 < e2e["peak_rss_mb"] < 4096
    # the daemon's own memory, not this test process's (torch, anomalib) carried over the fork
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert own_mb < 400 or e2e["peak_rss_mb"] < own_mb, (e2e["peak_rss_mb"], own_mb)
    text = capsys.readouterr().out
    for part in ("| int8 | f32 |", "Accuracy on 34 test images", f"End to end ({e2e['variant']}, 40 frames",
                 "peak RSS MB", "Commissioning on this machine"):  # fmt: skip
        assert part in text


@pytest.mark.export
def test_bench_against_anomalibs_own_inferencers(exported, dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    args = ["bench", "--bundle", str(exported.bundle), "--frames", "10", "--requests", "2", "--data", str(dataset),
            "--e2e", "0", "--anomalib", "--anomalib-layers", "blocks.2", "blocks.4", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    ref = json.loads(out.read_text())["anomalib"]
    # the same coreset ratio over the same patch grid (blocks.2 sets it), more layers on anomalib's side
    assert ref["bank_rows"] == exported.manifest.model.params["memory_bank_rows"]
    assert ref["layers"] == ["blocks.2", "blocks.4"]
    for row in ref["rows"].values():
        assert 0 < row["p50_ms"] <= row["p99_ms"] and 0.5 < row["auroc"] <= 1
    assert ref["export"]["anomalib"]["coreset_s"] > 0 and ref["export"]["edge_ad"]["fit_s"] > 0
    text = capsys.readouterr().out
    assert "anomalib OpenVINOInferencer" in text and "anomalib TorchInferencer" in text and "speed-up" in text
    assert "layers blocks.2 + blocks.4 vs ours blocks.2" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"], "the bench left files in the working dir"


@pytest.mark.export
def test_accuracy_bench_scores_every_model_on_the_same_held_out_images(dataset, tmp_path, capsys):
    from edge_ad.datasets.layout import find_category
    from edge_ad.export.pipeline import split_test

    out = tmp_path / "accuracy.json"
    assert main(["bench", "accuracy", str(dataset), "--seeds", "0", "--frames", "5", "--json", str(out)]) == 0
    case = json.loads(out.read_text())["cases"][0]
    run = case["runs"][0]
    _, test = split_test(find_category(dataset))
    assert run["labels"] == test.labels.tolist()  # the held-out split, not the images that chose size and threshold
    scores = {name: np.array(values) for name, values in run["scores"].items()}
    assert sorted(scores) == ["anomalib", "edge_ad", "edge_ad_exact_full", "edge_ad_fp32"]
    assert all(s.shape == test.labels.shape for s in scores.values())
    # same size, the same greedy algorithm (each side draws its own projection and first centre), same exact
    # search; anomalib's deploy path normalises scores and clips them at 1 (ties at the top). Scores of other
    # images or in another order would not correlate.
    unclipped = scores["anomalib"] < 1
    assert unclipped.sum() >= 8
    assert spearman(scores["edge_ad_exact_full"][unclipped], scores["anomalib"][unclipped]) >= 0.9
    summary = case["summary"]
    assert abs(summary["edge_ad_exact_full"]["diff"]) <= 0.03 and summary["anomalib"]["low"] <= 1
    assert run["edge_ad"]["input"] == 128 and run["edge_ad"]["p50_ms"] > 0 and run["anomalib"]["p50_ms"] > 0
    assert run["edge_ad"]["coreset_s"] > 0 and run["anomalib"]["coreset_s"] > 0
    text = capsys.readouterr().out
    assert f"{dataset.name} (strength None; {test.labels.size} test images" in text and "speed-up" in text


def test_ladder_measures_every_family_on_the_same_held_out_images(dataset, tmp_path, capsys):
    from edge_ad.calibrate.metrics import auroc
    from edge_ad.datasets.layout import find_category
    from edge_ad.export.pipeline import split_test

    out = tmp_path / "ladder.json"
    args = ["bench", "ladder", "--data", str(dataset), "--models", "patchcore", "global_knn", "--image-size", "64"]
    assert main([*args, "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    _, test = split_test(find_category(dataset))
    assert case["images"] == {"test": test.labels.size, "defects": int(test.labels.sum())}
    rows = {r["type"]: r for r in case["rows"]}
    assert list(rows) == ["patchcore", "global_knn"] and case["reference"] == "patchcore"
    for r in rows.values():  # every figure measured on the held-out split, at the one size
        assert r["auroc"] == pytest.approx(auroc(test.labels, np.array(r["scores"])))
        assert r["low"] <= r["auroc"] <= r["high"] and r["pixel_auroc"] is not None  # the data has masks
        assert r["fp32_p50_ms"] > 0 and r["fit_s"] > 0 and r["bundle_mb"] > 0
        assert r["int8_gate"] in ("pass", "rejected") and (r["int8_p50_ms"] is None) == (r["int8_auroc"] is None)
    assert rows["patchcore"]["pixel_auroc"] >= 0.6  # PatchCore localises; global_knn's map is a coarse stand-in
    assert "diff" not in rows["patchcore"] and rows["global_knn"]["diff"] == pytest.approx(
        rows["global_knn"]["auroc"] - rows["patchcore"]["auroc"]
    )
    text = capsys.readouterr().out
    assert "| patchcore | " in text and "(reference)" in text and "64 px, seed 0" in text
