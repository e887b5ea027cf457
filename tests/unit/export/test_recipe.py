from __future__ import annotations

from pathlib import Path

import pytest

from edge_ad.errors import ConfigError
from edge_ad.export.recipe import ExportRecipe, load_recipe

REPO = Path(__file__).resolve().parents[3]


def test_shipped_recipes_are_valid():
    recipes = sorted((REPO / "calibration").glob("*.yaml"))
    assert recipes, "calibration/ has no recipe"
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.data.is_absolute() and recipe.out.is_absolute()


def test_paths_resolve_against_the_recipe_and_defaults_apply(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: data/brick\nmodel: {type: padim}\nthreshold: {method: sigma, k: 4}\n")
    recipe = load_recipe(path)
    assert recipe.data == tmp_path / "data/brick" and recipe.out == tmp_path / "models"
    assert recipe.model.resolved_layers() == ["blocks.1", "blocks.2", "blocks.4"]
    assert recipe.threshold.k == 4 and recipe.int8.mode == "ptq" and recipe.int8.max_drop is None


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("data: d\n", 0.003),
        ("data: d\nmodel: {type: efficientad}\n", 0.01),
        ("data: d\nmodel: {type: efficientad}\nint8: {max_drop: 0.002}\n", 0.002),
    ],
)
def test_int8_budget_is_0_3_point_and_1_point_for_efficientad_unless_set(tmp_path, text, budget):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert load_recipe(path).int8_budget == budget


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: d\nint8: {max_drop: 1.5}\n", "int8.max_drop: Input should be less than or equal to 1"),
        ("data: d\nmodel: {typ: padim}\n", "model.typ: unknown key; did you mean 'type'?"),
        ("data: d\nthreshold: {method: median}\n", "threshold.method: Input should be 'f1', 'sigma' or 'percentile'"),
        ("model: {}\n", "data: required key is missing"),
        ("data: d\nmodel: {type: efficientad, image_size: 100}\n", "model: .*multiple of 32 and >= 128, got 100"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_layers_default_per_model_type():
    assert ExportRecipe(data=Path("d")).model.resolved_layers() == ["blocks.2"]


@pytest.mark.parametrize(
    ("flags", "layers", "coarse_fraction"),
    [
        ([], ["blocks.2"], 0.1),  # the measured defaults
        (["--layers", "blocks.2", "blocks.4", "--exact-search"], ["blocks.2", "blocks.4"], None),  # the former ones
        (["--coarse-fraction", "0.2"], ["blocks.2"], 0.2),
    ],
)
def test_export_flags_choose_layers_and_the_search(flags, layers, coarse_fraction):
    from edge_ad.cli import _build_parser, _recipe_from_args

    recipe = _recipe_from_args(_build_parser().parse_args(["export", "--data", "d", *flags]))
    assert recipe.model.resolved_layers() == layers and recipe.model.coarse_fraction == coarse_fraction
