from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.threshold import choose_threshold

GOOD = np.array([1.0, 2.0, 3.0, 2.0, 2.0])
BAD = np.array([6.0, 7.0, 9.0])


def test_f1_sits_between_classes_and_records_inputs():
    t = choose_threshold("f1", GOOD, BAD)
    assert 3.0 < t.value < 6.0
    assert t.inputs == {"split": "validation", "good": 5, "defect": 3, "f1": 1.0}


def test_sigma_is_mean_plus_k_std():
    t = choose_threshold("sigma", GOOD, k=2.0)
    assert t.value == pytest.approx(GOOD.mean() + 2.0 * GOOD.std(ddof=1))
    assert t.method == "sigma" and t.inputs["k"] == 2.0


def test_percentile_of_good_scores():
    good = np.arange(1, 101, dtype=float)
    assert choose_threshold("percentile", good, percentile=90).value == pytest.approx(np.percentile(good, 90))


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("f1", {}, "needs defect images"),  # f1 without defects
        ("sigma", {"good_scores": np.array([1.0])}, "at least 2 good scores"),
        ("percentile", {"percentile": 0.0}, "percentile must be in"),
        ("median", {}, "unknown threshold method"),
    ],
)
def test_bad_requests(method, kwargs, message):
    args = {"good_scores": GOOD, **kwargs}
    with pytest.raises(ValueError, match=message):
        choose_threshold(method, **args)
