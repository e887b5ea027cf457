from __future__ import annotations

import pytest

from edge_ad.export.model_choice import ModelTrial, choose_model, model_table
from edge_ad.export.recipe import ModelOptions

TRIALS = [
    ModelTrial("patchcore", 192, 0.97, 8.0, 3.0),
    ModelTrial("padim", 192, 0.95, 4.0, 2.0),
    ModelTrial("global_knn", 192, 0.90, 2.0, 1.0),
]


@pytest.mark.parametrize(
    ("budget", "chosen"),
    [
        (None, "patchcore"),  # no budget: the best AUROC
        (20.0, "patchcore"),
        (8.0, "patchcore"),  # at the budget counts as within
        (7.9, "padim"),  # the best of those within
        (3.0, "global_knn"),
        (1.0, "global_knn"),  # none within: the fastest
    ],
)
def test_the_best_validation_auroc_within_the_budget(budget, chosen):
    assert choose_model(TRIALS, budget) == chosen


def test_a_tie_goes_to_the_faster():
    tied = [ModelTrial("patchcore", 128, 0.95, 8.0, 3.0), ModelTrial("padim", 128, 0.95, 4.0, 2.0)]
    assert choose_model(tied, None) == "padim"


def test_the_table_says_when_nothing_was_within_the_budget():
    table = model_table(TRIALS, choose_model(TRIALS, 1.0), 1.0)
    assert table["chosen"] == "global_knn" and table["within_budget"] is False and len(table["candidates"]) == 3
    assert "p50 <= 1 ms" in table["rule"]
    assert model_table(TRIALS, "padim", 7.9)["within_budget"] is True


def test_auto_has_no_layers_of_its_own():
    with pytest.raises(ValueError, match="type auto uses each candidate's default layers"):
        ModelOptions(type="auto", layers=["blocks.2"])
    with pytest.raises(ValueError, match="resolve it to a candidate first"):
        ModelOptions(type="auto").resolved_layers()
