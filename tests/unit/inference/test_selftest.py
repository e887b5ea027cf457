from __future__ import annotations

import pytest

from edge_ad.bundle import load_bundle
from edge_ad.errors import ModelLoadError
from edge_ad.inference import AnomalyModel
from edge_ad.inference.selftest import self_test


def test_golden_images_reproduce_their_scores(tiny_models):
    assert self_test(AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "CPU"), 0.02) == 2


def test_a_model_that_scores_differently_fails(tiny_models):
    bundle = load_bundle(tiny_models / "tiny")
    shifted = [g.model_copy(update={"scores": {"fp32": g.scores["fp32"] * 1.2}}) for g in bundle.manifest.golden]
    other = type(bundle)(path=bundle.path, manifest=bundle.manifest.model_copy(update={"golden": shifted}))
    with pytest.raises(
        ModelLoadError, match=r"self-test failed on CPU \(fp32, f32\): golden/0\.png scored .* \(tolerance 2%\)"
    ):
        self_test(AnomalyModel(other, "fp32", "CPU"), 0.02)
