"""The export report on a tiny real bundle and an MVTec-layout folder (no torch; matplotlib draws the plots)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from edge_ad.bundle import Bundle, Threshold, load_bundle
from edge_ad.calibrate.threshold import choose_threshold
from edge_ad.datasets.layout import mask_path
from edge_ad.export import plots
from edge_ad.export.report import build_report, rebuild_report, sigma_check
from edge_ad.export.split import Split
from edge_ad.inference import AnomalyModel
from tests.support.tiny_bundle import defect_image, good_image, make_tiny_bundle

INPUT_SIZE = {
    "candidates": [
        {"size": 32, "validation_auroc": 1.0, "fit_s": 0.5},
        {"size": 64, "validation_auroc": 1.0, "fit_s": 2.0},
    ],
    "chosen": 32,
    "source": [32, 32],
    "rule": "the smallest size within 0.005 validation AUROC of the best",
    "note": "<script>alert(1)</script> downscaled",  # must come out escaped
}


def category(root: Path, seeds: range) -> Path:
    """test/good and test/square images; masks under ground_truth/square (the square's pixels)."""
    for s in seeds:
        good, bad = good_image(s), defect_image(s)
        for kind, image in (("good", good), ("square", bad)):
            (root / "test" / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "test" / kind / f"{s:03d}.png"), image)
        mask = np.any(bad != good, axis=2).astype(np.uint8) * 255
        path = mask_path(root / "test" / "square" / f"{s:03d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), mask)
    return root


def split(name: str, root: Path, seeds: range) -> Split:
    kinds = [kind for kind in ("good", "square") for _ in seeds]
    paths = [root / "test" / kind / f"{s:03d}.png" for kind in ("good", "square") for s in seeds]
    labels = np.array([int(kind != "good") for kind in kinds])
    return Split(name, paths, labels, kinds, [cv2.imread(str(p)) for p in paths])


@pytest.fixture
def exported(tmp_path):
    """A tiny two-variant bundle with a threshold between the classes, and its validation/test splits."""
    version = make_tiny_bundle(tmp_path / "models", int8_alias=True)
    bundle = load_bundle(version)
    root = category(tmp_path / "data", range(40, 52))
    splits = {"validation": split("validation", root, range(40, 46)), "test": split("test", root, range(46, 52))}
    scores = {
        v: {n: AnomalyModel(bundle, v, "CPU").score_images(s.images) for n, s in splits.items()}
        for v in bundle.manifest.variants
    }
    metrics = {
        "int8": {"mode": "ptq", "max_drop": 0.005, "validation_auroc_drop": 0.001, "gate": "pass",
                 "spearman_vs_fp32": 0.99, "verdict_agreement_vs_fp32": 1.0},
        "latency_ms": {"fp32": {"p50": 0.8, "p99": 1.7, "frames": 22}, "int8": {"p50": 0.5, "p99": 1.1, "frames": 22}},
        "input_size": INPUT_SIZE,
    }  # fmt: skip
    manifest = bundle.manifest.model_copy(update={"metrics": metrics, "default_variant": "int8"})
    return Bundle(path=version, manifest=manifest), splits, scores


def with_threshold(bundle: Bundle, value: float) -> Bundle:
    variants = {
        n: v.model_copy(update={"threshold": v.threshold.model_copy(update={"value": value})})
        for n, v in bundle.manifest.variants.items()
    }
    return Bundle(path=bundle.path, manifest=bundle.manifest.model_copy(update={"variants": variants}))


def test_the_report_shows_what_a_quality_engineer_signs(exported, tmp_path):
    bundle, splits, scores = exported
    html = build_report(bundle.path, bundle.manifest, splits, scores, out=tmp_path / "r").read_text()
    m = bundle.manifest
    assert f"<title>edge_ad report {m.name} v{m.version}</title>" in html
    assert re.search(r"<td class=\"text\">test</td><td>6</td><td>6</td>", html), "sample sizes per split"
    assert html.count("95 % bootstrap") == 1 and html.count("(6 of 6)") >= 2  # counts beside the rates
    assert "exact 95 % bound" in html  # a perfectly separated split says what 6 images cannot rule out
    assert "pixel AUROC" in html and "AUPRO" in html and "Pixel metrics skipped" not in html
    assert "false rejects ≤ 0.5 %" in html and "best F1" in html  # operating points
    assert "No false rejects at" in html and "No escapes at" in html  # the tiny model separates the classes
    assert "verdict pass" in html and "+0.0010" in html  # the INT8 gate
    assert "0.8" in html and "1.7" in html  # latency at export
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "http" not in html and html.count("data:image/png;base64,") >= 6  # one offline file
    numbers = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert numbers["pixel"]["fp32"]["pixel_auroc"] > 0.9 and 0.5 < numbers["pixel"]["fp32"]["aupro"] <= 1.0
    assert numbers["intervals"]["fp32"]["image_auroc"]["estimate"] == 1.0


def test_galleries_of_false_rejects_and_escapes(exported, tmp_path):
    bundle, splits, scores = exported
    test = scores["int8"]["test"].copy()
    test[[0, 1]] = 100.0  # two good images score like defects: false rejects
    test[-1] = -1.0  # a defect scores like a good image: an escape
    scores = {**scores, "int8": {**scores["int8"], "test": test}}
    html = build_report(bundle.path, bundle.manifest, splits, scores, out=tmp_path / "r").read_text()
    t = f"{bundle.manifest.variants['int8'].threshold.value:.4g}"
    assert f"False rejects at {t} (int8): 2 of 6 good images rejected, worst first" in html
    assert f"Escapes at {t} (int8): 1 of 6 defect images pass as OK, worst first" in html
    names = sorted(p.name.split("_0")[0] for p in (tmp_path / "r" / "overlays").glob("*.png"))
    assert names == ["closest", "closest", "escape", "false_reject", "false_reject"]


def test_a_variant_the_int8_gate_rejected_is_reported_not_run(exported, tmp_path):
    bundle, splits, scores = exported
    variants = {
        **bundle.manifest.variants,
        "int8": bundle.manifest.variants["int8"].model_copy(update={"status": "rejected"}),
    }
    manifest = bundle.manifest.model_copy(update={"variants": variants, "default_variant": "fp32"})
    html = build_report(bundle.path, manifest, splits, scores, out=tmp_path / "r").read_text()
    assert '<th class="text">status</th><td>ok</td><td>rejected</td>' in html
    numbers = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert set(numbers["pixel"]) == {"fp32", "int8"}  # its maps measured all the same
    assert "No false rejects at" in html and "(fp32)" in html  # the galleries follow the default variant


def test_a_defect_without_a_mask_skips_pixel_metrics_and_says_so(exported, tmp_path):
    bundle, splits, scores = exported
    mask_path(splits["test"].paths[-1]).unlink()
    html = build_report(bundle.path, bundle.manifest, splits, scores, out=tmp_path / "r").read_text()
    assert "Pixel metrics skipped: 1 of 6 defect images have no ground-truth mask" in html
    assert "AUPRO (" not in html


def test_rebuilt_report_has_the_same_numbers_and_handles_an_old_manifest(exported, tmp_path):
    bundle, splits, scores = exported
    build_report(bundle.path, bundle.manifest, splits, scores)  # into the bundle, as export does
    first = json.loads((bundle.path / "report" / "metrics.json").read_text())
    html = rebuild_report(bundle.path, tmp_path / "again").read_text()  # the installed manifest: no metrics at all
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["intervals"] == first["intervals"] and again["pixel"] == first["pixel"]  # fixed seed
    assert "Not measured at export" in html and "Not recorded" in html and "No INT8 gate recorded" in html


def sigma_threshold(good: np.ndarray, k: float = 3.0) -> Threshold:
    return choose_threshold("sigma", good, k=k)


def test_a_sigma_threshold_marks_mu_and_mu_plus_k_sigma_on_the_histogram():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(10, int)]
    scores = np.r_[rng.normal(1.0, 0.1, 40), rng.normal(1.6, 0.2, 10)]
    marks = plots.SigmaMarks(mean=1.0, std=0.1, k=3.0, note="counts go here")
    fig = plots.histogram_figure("fp32", labels, scores, 1.3, marks)
    try:
        lines = {line.get_label(): line.get_xdata()[0] for line in fig.axes[0].get_lines()}
        assert lines == {"threshold μ + 3σ 1.3": 1.3, "μ good (validation) 1": 1.0}
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend == ["good", "defect", "threshold μ + 3σ 1.3", "μ good (validation) 1"]
        assert "counts go here" in [t.get_text() for t in fig.texts]
    finally:
        plots.plt.close(fig)
    plain = plots.histogram_figure("fp32", labels, scores, 1.3)  # another method: the threshold alone
    try:
        assert [line.get_label() for line in plain.axes[0].get_lines()] == ["threshold 1.3"] and not plain.texts
    finally:
        plots.plt.close(plain)


def test_sigma_check_counts_the_validation_images_at_or_above_mu_plus_k_sigma():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 10.0, 2.0, 20.0, 30.0])
    threshold = sigma_threshold(scores[:4], k=1.0)  # mean 4, std (ddof 1) 4.08: 8.08
    val = Split("validation", [Path(f"{i}.png") for i in range(7)], labels, ["good"] * 4 + ["hole"] * 3)
    check = sigma_check(threshold, val, scores)
    assert (check.mean, check.k) == (4.0, 1.0) and check.value == pytest.approx(4.0 + np.std(scores[:4], ddof=1))
    assert (check.good_above, check.good, check.defect_above, check.defect) == (1, 4, 2, 3)
    assert check.text.endswith("At or above it (NG): 1 of 4 good and 2 of 3 defect validation images.")
    assert "μ + 1σ of the good validation scores: 4 + 1 × 4.082 = 8.082" in check.text
    assert sigma_check(choose_threshold("f1", scores[:4], scores[4:]), val, scores) is None
    assert sigma_check(threshold.model_copy(update={"inputs": {}}), val, scores) is None  # an old record
    assert sigma_check(threshold, None, None) is None


def test_the_report_of_a_sigma_threshold_says_where_mu_plus_k_sigma_falls(exported, tmp_path):
    bundle, splits, scores = exported
    val = splits["validation"]
    variants = {}
    for name, variant in bundle.manifest.variants.items():
        good = scores[name]["validation"][val.labels == 0]
        variants[name] = variant.model_copy(update={"threshold": sigma_threshold(good)})
    manifest = bundle.manifest.model_copy(update={"variants": variants})
    build_report(bundle.path, manifest, splits, scores, out=tmp_path / "r")
    numbers = json.loads((tmp_path / "r" / "metrics.json").read_text())["sigma_threshold"]
    assert set(numbers) == {"fp32", "int8"}
    for name, check in numbers.items():
        s = scores[name]["validation"]
        good, bad = s[val.labels == 0], s[val.labels == 1]
        value = good.mean() + 3 * good.std(ddof=1)
        assert check["k"] == 3.0 and check["value"] == pytest.approx(value)
        assert check["good_above"] == int((good >= value).sum()) and check["good"] == 6
        assert check["defect_above"] == int((bad >= value).sum()) == 6  # the tiny model separates the classes
        assert check["text"].endswith(f"{check['good_above']} of 6 good and 6 of 6 defect validation images.")
    assert (tmp_path / "r" / "histogram_fp32.png").is_file()
    # a bundle whose threshold is not sigma has no such section
    build_report(bundle.path, bundle.manifest, splits, scores, out=tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "metrics.json").read_text())["sigma_threshold"] == {}
