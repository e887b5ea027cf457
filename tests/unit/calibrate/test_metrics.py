from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.metrics import auroc, auroc_intervals, best_f1_threshold, classification_stats, spearman


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect separation
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),  # inverted
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all ties
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # one swapped pair
    ],
)
def test_auroc(labels, scores, expected):
    assert auroc(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_auroc_matches_torchmetrics_on_random_data():
    torchmetrics = pytest.importorskip("torchmetrics")
    import torch

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(labels * 0.7, 1.0)
    ref = torchmetrics.functional.classification.binary_auroc(torch.tensor(scores), torch.tensor(labels)).item()
    assert auroc(labels, scores) == pytest.approx(ref, abs=1e-6)


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both good and defect"):
        auroc(np.array([0, 0]), np.array([1.0, 2.0]))


def test_spearman():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_best_f1_threshold_sits_between_classes():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    threshold, f1 = best_f1_threshold(labels, scores)
    assert threshold == pytest.approx(4.0) and f1 == 1.0
    stats = classification_stats(labels, scores, threshold)
    assert (stats["tp"], stats["fp"], stats["fn"], stats["tn"]) == (2, 0, 0, 3)


def test_best_f1_threshold_with_overlap():
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([1, 2, 3, 4, 5, 6], dtype=float)
    threshold, f1 = best_f1_threshold(labels, scores)
    assert f1 == pytest.approx(classification_stats(labels, scores, threshold)["f1"])
    assert f1 == pytest.approx(max(classification_stats(labels, scores, t)["f1"] for t in np.arange(0, 7, 0.25)))


def test_auroc_intervals_are_paired_and_stratified():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    fp32 = np.concatenate([rng.normal(0, 1, 60), rng.normal(2, 1, 60)])
    noisy = fp32 + rng.normal(0, 1.5, 120)  # ranks worse on the same images
    out = auroc_intervals(labels, {"fp32": fp32, "same": fp32.copy(), "noisy": noisy}, resamples=300)
    low, high = out["fp32"]["auroc"]
    assert low < auroc(labels, fp32) < high and high - low < 0.2
    assert out["same"]["drop"] == (0.0, 0.0)  # paired draws: an identical variant loses exactly nothing
    assert out["noisy"]["drop"][0] > 0  # the loss is real on these images, not sampling noise
    assert "drop" not in out["fp32"]
