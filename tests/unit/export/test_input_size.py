from __future__ import annotations

import pytest

from edge_ad.export.input_size import (
    RULE_CHOSEN,
    SizeTrial,
    candidate_sizes,
    choose_size,
    downscale_note,
    size_table,
)


@pytest.mark.parametrize(
    ("source", "model", "expected"),
    [
        ((1024, 768), "patchcore", [128, 192, 256]),
        ((256, 256), "patchcore", [128, 192, 256]),
        ((320, 200), "patchcore", [128, 192, 200]),  # the short side joins when it is below 256
        ((160, 160), "padim", [128, 160]),
        ((100, 90), "patchcore", [90]),  # never upscaled: the images' own size only
        ((200, 200), "efficientad", [128, 192]),  # EfficientAD: multiples of 32 only
        ((100, 100), "efficientad", [128]),
    ],
)
def test_candidates_stop_at_the_images_short_side(source, model, expected):
    assert candidate_sizes(source, model) == expected


def test_the_smallest_size_within_half_a_point_of_the_best_is_chosen():
    trials = [SizeTrial(128, 0.900, 1), SizeTrial(192, 0.952, 2), SizeTrial(256, 0.956, 3)]
    assert choose_size(trials) == 192  # 0.952 is within 0.005 of 0.956; 0.900 is not
    assert choose_size([SizeTrial(128, 0.951, 1), *trials[1:]]) == 128
    assert choose_size([SizeTrial(128, 0.950, 1), SizeTrial(256, 0.9551, 3)]) == 256  # 0.0051 behind: too far
    assert choose_size([SizeTrial(128, 0.95, 1), SizeTrial(256, 0.95, 3)]) == 128  # a tie goes to the faster


def test_the_downscale_note_names_the_factor_and_suggests_a_roi():
    note = downscale_note((1024, 768), 128, None)
    assert "1024x768" in note and "8.0x" in note and "128x128" in note and "roi" in note
    assert "narrow the roi" in downscale_note((512, 512), 256, (0, 0, 512, 512))
    assert downscale_note((128, 128), 128, None) is None
    assert downscale_note((100, 90), 128, None) is None  # upscaled, not shrunk


def test_the_table_holds_the_trials_and_the_choice():
    trials = [SizeTrial(128, 0.9, 1.5), SizeTrial(192, 0.95, 2.5)]
    table = size_table(trials, 192, RULE_CHOSEN, (640, 480), None)
    assert table["chosen"] == 192 and table["source"] == [640, 480] and "0.005" in table["rule"]
    assert [t["size"] for t in table["candidates"]] == [128, 192] and table["candidates"][1]["fit_s"] == 2.5
    assert "3.3x" in table["note"]
