from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_ad.types import is_ng, published_scores, round_score, score_norm


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


def test_an_ok_score_a_hair_below_the_threshold_is_not_shown_equal_to_it():
    """Rounded alone, 26.4699996 would be 26.47 (= the threshold) and its score_norm 0.5: both read as NG."""
    assert round_score(26.4699996) == 26.47 and round_score(score_norm(26.4699996, 26.47)) == 0.5
    assert published_scores(26.4699996, 26.47) == (26.469999, 0.499999, 26.47)
    assert published_scores(26.47, 26.47) == (26.47, 0.5, 26.47)  # NG at the threshold stays NG
    assert published_scores(5.0, 10.0) == (5.0, 0.25, 10.0)  # away from it: plain rounding


finite = {"allow_nan": False, "allow_infinity": False}


@given(
    threshold=st.floats(min_value=-1e6, max_value=1e6, **finite),
    offset=st.one_of(st.floats(min_value=-1e-5, max_value=1e-5, **finite), st.floats(-1e6, 1e6, **finite)),
)
def test_published_scores_tell_the_verdict(threshold, offset):
    """Whatever the score, a consumer that re-applies the rule to the shown numbers gets the station's verdict."""
    score = threshold + offset
    ng = bool(is_ng(score, threshold))
    shown, norm, limit = published_scores(score, threshold)
    assert (shown >= limit) == ng
    if threshold > 0:
        assert (norm >= 0.5) == ng
    assert all(v == round(v, 6) for v in (shown, norm, limit))
    assert abs(shown - score) <= 2e-6 and 0.0 <= norm <= 1.0
