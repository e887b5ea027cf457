from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.operating import operating_point, operating_points, threshold_for_false_reject

# 10 good images scored 1..10, 5 defects scored 8.5, 9.5, 11, 12, 13
LABELS = np.r_[np.zeros(10), np.ones(5)].astype(int)
SCORES = np.r_[np.arange(1.0, 11.0), [8.5, 9.5, 11, 12, 13]]


@pytest.mark.parametrize(
    ("target", "threshold", "rejected", "caught"),
    [
        (0.0, 10.5, 0, 3),  # above the highest good score, midway to the next score
        (0.05, 10.5, 0, 3),  # 5 % of 10 images rounds down to none: same as 0 %
        (0.1, 9.25, 1, 4),  # one good image (10) may be rejected: the 9.5 defect is caught too
        (0.2, 8.25, 2, 5),  # two good images (9, 10) rejected: every defect caught
        (0.3, 7.5, 3, 5),  # a third good image rejected buys nothing more
    ],
)
def test_threshold_for_a_false_reject_target(target, threshold, rejected, caught):
    t = threshold_for_false_reject(LABELS, SCORES, target)
    point = operating_point("x", LABELS, SCORES, t)
    assert t == pytest.approx(threshold)
    assert (point.rejected, point.caught) == (rejected, caught)
    assert point.false_reject <= target + 1e-12


def test_the_zero_false_reject_threshold_above_every_score_is_just_above_the_highest_good_score():
    labels, scores = np.array([0, 0, 1]), np.array([1.0, 5.0, 2.0])
    t = threshold_for_false_reject(labels, scores, 0.0)
    assert 5.0 < t < 5.0 + 1e-9
    assert operating_point("x", labels, scores, t).recall == 0.0


def test_operating_points_table():
    points = operating_points(LABELS, SCORES, chosen=10.0)
    assert [p.label for p in points] == [
        "chosen",
        "false rejects ≤ 0 %",
        "false rejects ≤ 0.5 %",
        "false rejects ≤ 1 %",
        "false rejects ≤ 2 %",
        "false rejects ≤ 5 %",
        "best F1",
    ]
    chosen = points[0]
    assert (chosen.threshold, chosen.rejected, chosen.good, chosen.caught, chosen.defects) == (10.0, 1, 10, 3, 5)
    assert chosen.recall == pytest.approx(0.6) and chosen.false_reject == pytest.approx(0.1)
    assert chosen.precision == pytest.approx(0.75) and chosen.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert points[-1].f1 >= max(p.f1 for p in points[:-1])


@pytest.mark.parametrize("target", [-0.1, 1.0])
def test_targets_outside_0_1_are_refused(target):
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        threshold_for_false_reject(LABELS, SCORES, target)
