from __future__ import annotations

import numpy as np
import pytest

from edge_ad.report.histogram import histogram


def test_bins_are_shared_and_count_every_score():
    h = histogram("x", {"good": np.array([0.0, 0.1, 0.2]), "defects": np.array([0.9, 1.0]), "none": None}, {"t": 0.5})
    assert [s.name for s in h.series] == ["good", "defects"]  # a missing series is left out
    assert [sum(s.counts) for s in h.series] == [3, 2] and [s.total for s in h.series] == [3, 2]
    assert (h.low, h.high, h.bins, h.top) == (0.0, 1.0, 30, 1)
    assert h.lines[0].at == pytest.approx(0.5)


def test_a_threshold_outside_the_scores_widens_the_axis():
    h = histogram("x", {"good": np.array([1.0, 2.0])}, {"old": 4.0, "new": 3.0}, bins=4)
    assert (h.low, h.high) == (1.0, 4.0) and [line.at for line in h.lines] == [1.0, pytest.approx(2 / 3)]
    assert h.lines[0].dash and not h.lines[1].dash  # old dashed, new solid


def test_identical_scores_still_draw():
    h = histogram("x", {"good": np.array([2.0, 2.0])}, {})
    assert h.high > h.low and sum(h.series[0].counts) == 2
