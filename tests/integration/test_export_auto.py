"""``model.type: auto``: the cheap families fitted on the same data, the best within the latency budget kept."""

from __future__ import annotations

import pytest

from edge_ad.export.model_choice import ModelTrial, choose_model

pytestmark = [pytest.mark.integration, pytest.mark.export]


def test_auto_keeps_what_the_rule_picks_and_records_every_candidate(tmp_path_factory, dataset, capsys):
    """One export with a budget nothing meets (the fastest is kept); the rule's other cases: test_model_choice.py."""
    from edge_ad.export.pipeline import export_bundle
    from edge_ad.export.recipe import ExportRecipe, Int8Options, ModelOptions
    from tests.support.net import block_network

    budget = 1e-3
    candidates = ["patchcore", "global_knn"]
    options = ModelOptions(type="auto", auto_candidates=candidates, auto_latency_ms=budget, image_size=128)
    recipe = ExportRecipe(
        data=dataset, out=tmp_path_factory.mktemp("models"), model=options, int8=Int8Options(mode="none")
    )
    with block_network() as attempts:
        result = export_bundle(recipe)
    assert not attempts
    table = result.manifest.metrics["model_choice"]
    trials = [ModelTrial(**t) for t in table["candidates"]]
    assert [t.type for t in trials] == ["patchcore", "global_knn"] and {t.size for t in trials} == {128}
    assert all(0 <= t.validation_auroc <= 1 and t.p50_ms > 0 for t in trials)
    assert table["chosen"] == choose_model(trials, budget) == result.manifest.model.type
    assert table["within_budget"] is False and table["chosen"] == min(trials, key=lambda t: t.p50_ms).type
    # the chosen family continues as if the recipe had named it: trained once, its trial size kept
    assert result.manifest.input.height == 128 and result.manifest.metrics["input_size"]["chosen"] == 128
    chosen = next(t for t in trials if t.type == table["chosen"])
    assert result.manifest.variants["fp32"].metrics["validation_auroc"] == pytest.approx(chosen.validation_auroc)
    report = (result.bundle / "report" / "report.html").read_text()
    assert "Model family (auto)" in report and all(f"<td>{t.type}</td>" in report for t in trials)
    assert "the fastest was kept" in report
    from edge_ad.cli import _print_choices

    _print_choices(result.manifest.metrics)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"auto     {table['chosen']}: {table['rule']}"
    assert sum("<- chosen" in line and table["chosen"] in line for line in lines) == 1
