"""The paired bootstrap behind the coreset accuracy comparison."""

from __future__ import annotations

import numpy as np

from edge_ad.bench.coreset import paired_auroc_difference


def test_identical_scores_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(50), np.ones(50)]
    scores = rng.normal(size=100) + labels
    assert paired_auroc_difference(labels, scores, scores, resamples=200) == {
        "diff": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
    }


def test_a_better_model_gets_an_interval_above_zero_and_a_tiny_change_one_around_it():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(150), np.ones(150)]
    base = rng.normal(size=300) + 1.5 * labels
    better = base + 1.5 * labels
    clearly = paired_auroc_difference(labels, better, base, resamples=500)
    assert clearly["diff"] > 0.05 and clearly["ci_low"] > 0
    nudged = paired_auroc_difference(labels, base + rng.normal(0, 0.01, 300), base, resamples=500)
    assert nudged["ci_low"] <= nudged["diff"] <= nudged["ci_high"] and nudged["ci_high"] - nudged["ci_low"] < 0.01
