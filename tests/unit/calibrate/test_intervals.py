from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.intervals import exact_bound, image_intervals
from edge_ad.calibrate.metrics import auroc, auroc_intervals


def overlapping(good: int, defects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], [good, defects])
    return labels, np.concatenate([rng.normal(0, 1, good), rng.normal(1.5, 1, defects)])


def width(interval) -> float:
    return interval.high - interval.low


def test_each_interval_contains_its_estimate_and_the_estimates_are_the_plain_metrics():
    labels, scores = overlapping(40, 20)
    out = image_intervals(labels, scores, threshold=1.0, resamples=400)
    assert out["image_auroc"].estimate == pytest.approx(auroc(labels, scores))
    assert out["recall"].estimate == pytest.approx(np.mean(scores[labels == 1] >= 1.0))
    assert out["false_reject"].estimate == pytest.approx(np.mean(scores[labels == 0] >= 1.0))
    for interval in out.values():
        assert interval.low <= interval.estimate <= interval.high and width(interval) > 0
    assert (out["false_reject"].events, out["false_reject"].images) == (int(np.sum(scores[:40] >= 1.0)), 40)


def test_intervals_shrink_with_more_images():
    small = image_intervals(*overlapping(20, 10), threshold=1.0, resamples=400)
    large = image_intervals(*overlapping(320, 160), threshold=1.0, resamples=400)
    for name in ("image_auroc", "recall", "false_reject"):
        assert width(large[name]) < width(small[name]) / 2, name  # ~1/sqrt(16) of the width


def test_the_auroc_interval_is_the_one_auroc_intervals_gives_for_the_same_seed():
    labels, scores = overlapping(30, 12, seed=3)
    mine = image_intervals(labels, scores, 0.5, resamples=300, seed=7)["image_auroc"]
    theirs = auroc_intervals(labels, {"x": scores}, resamples=300, seed=7)["x"]["auroc"]
    assert (mine.low, mine.high) == pytest.approx(theirs)


def test_same_seed_same_report_other_seed_other_draws():
    labels, scores = overlapping(30, 12)
    assert image_intervals(labels, scores, 0.5, seed=1) == image_intervals(labels, scores, 0.5, seed=1)
    assert image_intervals(labels, scores, 0.5, seed=1) != image_intervals(labels, scores, 0.5, seed=2)


def test_a_separable_split_has_collapsed_intervals_and_says_what_the_images_cannot_rule_out():
    labels = np.repeat([0, 1], [40, 10])
    scores = np.r_[np.linspace(0, 1, 40), np.linspace(2, 3, 10)]
    out = image_intervals(labels, scores, threshold=1.5, resamples=200)
    assert (out["image_auroc"].low, out["image_auroc"].high) == (1.0, 1.0)
    assert (out["recall"].low, out["recall"].high, out["recall"].events) == (1.0, 1.0, 10)
    assert (out["false_reject"].low, out["false_reject"].high, out["false_reject"].events) == (0.0, 0.0, 0)
    # 0 of 40 good images rejected still allows a rate up to 8.8 %; 10 of 10 caught, a recall down to 69 %
    assert out["false_reject"].exact == pytest.approx(1 - 0.025 ** (1 / 40))
    assert out["recall"].exact == pytest.approx(0.025 ** (1 / 10))


@pytest.mark.parametrize(
    ("events", "images", "expected"),
    [
        (0, 1, 0.975),  # one image: almost nothing ruled out
        (0, 40, 0.0881),  # about 3.7 / n
        (5, 5, 0.4782),  # all caught: lower bound
        (3, 10, None),  # in between: the bootstrap interval is not degenerate
    ],
)
def test_exact_bound(events, images, expected):
    bound = exact_bound(events, images)
    assert bound == (None if expected is None else pytest.approx(expected, abs=1e-4))


def test_one_class_only_is_refused():
    with pytest.raises(ValueError, match="both good and defect"):
        image_intervals(np.zeros(5), np.arange(5.0), 1.0)
