"""Recalibration acceptance rules that need no model: frame counts and the active model's rejects."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from edge_ad.calibrate.recalibrate import Check, _active_rejects, require_frames
from edge_ad.config import RecalibrationConfig
from edge_ad.errors import DatasetError


@pytest.mark.parametrize(
    ("settings", "held_back", "good"),
    [
        ({}, 100, 400),  # the default 1 % target
        ({"target_false_reject": 0.1}, 10, 40),
        ({"target_false_reject": 0.07}, 15, 60),  # 14 frames measure 7.1 % at best
        ({"target_false_reject": 1 / 49}, 49, 196),  # 1 / (1 / 49) is 49.00000000000001 in floats
        ({"target_false_reject": 0.5}, 2, 20),  # min_frames decides
        ({"target_false_reject": 0.1, "holdback_every": 2, "min_frames": 8}, 10, 20),
    ],
)
def test_needed_good_frames(settings, held_back, good):
    rc = RecalibrationConfig(**settings)
    assert rc.needed_held_back() == held_back and rc.needed_good_frames() == good
    require_frames(good, rc)
    with pytest.raises(DatasetError):
        require_frames(good - 1, rc)


@pytest.mark.parametrize(
    "settings", [{"target_false_reject": 0}, {"max_active_false_reject": 0}, {"max_active_false_reject": 1.01}]
)
def test_targets_no_frame_count_can_show_are_refused(settings):
    with pytest.raises(ValidationError):
        RecalibrationConfig(**settings)


def test_too_few_frames_says_how_many_and_what_to_do():
    rc = RecalibrationConfig()
    with pytest.raises(DatasetError) as few:
        require_frames(12, rc)
    assert str(few.value) == (
        "recalibrate: 12 good frames, need at least 20 "
        "(capture more with --from-camera N, or lower recalibration.min_frames)"
    )
    with pytest.raises(DatasetError) as target:
        require_frames(40, rc)
    assert str(target.value) == (
        "recalibrate: 40 good frames hold back 10 for acceptance; a 1.0% false-reject target needs at least "
        "100 held back (400 good frames at holdback_every 4): capture more, or raise "
        "recalibration.target_false_reject"
    )


def test_held_back_frames_the_active_model_rejects_beyond_the_limit():
    threshold = SimpleNamespace(threshold=SimpleNamespace(value=19.81))
    active = SimpleNamespace(manifest=SimpleNamespace(version="3"), variant=lambda ir: threshold)
    assert _active_rejects(active, Check(false_reject=0.0, old_false_reject=0.5), 30, 0.5) == []  # at the limit
    assert _active_rejects(active, Check(false_reject=0.0, old_false_reject=1.0), 30, 1.0) == []  # the override
    assert _active_rejects(active, Check(false_reject=0.0, old_false_reject=0.9), 30, 0.5) == [
        "the active model (v3, threshold 19.81) rejects 27 of 30 held-back frames (90.0%) > 50.0%: the camera "
        "may be showing defects; check the parts, or after checking them run edge-ad recalibrate --parts-checked"
    ]
