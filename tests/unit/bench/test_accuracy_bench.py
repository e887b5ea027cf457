from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ad.bench.accuracy import Case, seed_mean_intervals
from edge_ad.calibrate.metrics import auroc
from edge_ad.errors import EdgeAdError


def test_a_case_is_a_texture_at_a_strength_or_a_directory(tmp_path):
    assert Case.parse("gravel=0.5") == Case(name="gravel", strength=0.5)
    part = tmp_path / "part7"
    for folder in ("train/good", "test/good"):
        (part / folder).mkdir(parents=True)
        cv2.imwrite(str(part / folder / "0.png"), np.zeros((8, 8, 3), np.uint8))
    assert Case.parse(str(part)) == Case(name="part7", data=part)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wood=0.5", "unknown texture 'wood'; choose from brick, gravel, grass"),
        ("brick=abc", "the defect strength must be a number in (0, 1], e.g. brick=0.5"),
        ("brick=0", "the defect strength must be a number in (0, 1]"),
        ("/nonexistent/part", "/nonexistent/part/train/good: missing or has no images"),
    ],
)
def test_a_bad_case_is_one_line_naming_it(text, message):
    with pytest.raises(EdgeAdError) as caught:
        Case.parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def _seeds(rng: np.random.Generator, separation: float, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat([0, 1], n // 2)
    return labels, rng.normal(size=n) + separation * labels


def test_seed_means_and_paired_differences_with_intervals():
    rng = np.random.default_rng(1)
    labels, better, worse = [], [], []
    for _ in range(3):
        y, s = _seeds(rng, 2.0)
        labels.append(y)
        better.append(s)
        worse.append(s + rng.normal(scale=1.5, size=s.size))  # the same images, noisier scores
    out = seed_mean_intervals(labels, {"a": better, "b": worse, "ref": better}, reference="ref", resamples=300)
    expected = np.mean([auroc(y, s) for y, s in zip(labels, worse, strict=True)])
    assert out["b"]["auroc"] == pytest.approx(expected)
    for row in out.values():
        assert row["low"] <= row["auroc"] <= row["high"]
    assert out["a"]["diff"] == out["a"]["diff_low"] == out["a"]["diff_high"] == 0  # identical scores, paired draws
    assert out["b"]["diff"] < 0 and out["b"]["diff_high"] < 0  # visibly worse on the same images
    assert "diff" not in out["ref"]


def test_more_test_images_narrow_the_interval():
    rng = np.random.default_rng(2)
    widths = []
    for n in (40, 400):
        y, s = _seeds(rng, 1.0, n)
        row = seed_mean_intervals([y], {"m": [s]}, reference="m", resamples=300)["m"]
        widths.append(row["high"] - row["low"])
    assert widths[1] < widths[0] / 2
