from __future__ import annotations

import math

import pytest

from edge_ad.types import is_ng, score_norm


@pytest.mark.parametrize(
    ("score", "threshold", "norm"),
    [
        (0.0, 10.0, 0.0),
        (5.0, 10.0, 0.25),
        (10.0, 10.0, 0.5),  # at the threshold: exactly 0.5, i.e. NG
        (15.0, 10.0, 0.75),
        (20.0, 10.0, 1.0),
        (1e9, 10.0, 1.0),  # clipped above
        (-3.0, 10.0, 0.0),  # clipped below (a raw score may be negative)
        (math.nan, 10.0, 0.0),  # NaN is not NG
        (-1.0, -2.0, 1.0),  # threshold <= 0: no scale, 1.0 for NG
        (-3.0, -2.0, 0.0),  # ... 0.0 for OK
        (0.0, 0.0, 1.0),
    ],
)
def test_score_norm(score, threshold, norm):
    assert score_norm(score, threshold) == norm


@pytest.mark.parametrize("threshold", [1e-6, 0.37, 26.47, 1e6])
def test_score_norm_is_ng_exactly_from_one_half(threshold):
    for score in (threshold, math.nextafter(threshold, 0), math.nextafter(threshold, math.inf), 0.0, 3 * threshold):
        assert (score_norm(score, threshold) >= 0.5) == bool(is_ng(score, threshold)), score
