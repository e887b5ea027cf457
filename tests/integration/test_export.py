"""Export a real PatchCore bundle offline and check it against anomalib's own predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.calibrate.metrics import spearman

pytestmark = [pytest.mark.export, pytest.mark.integration]


def test_export_works_with_network_blocked(exported):
    # The fixture exported with every non-loopback connect()/DNS lookup raising; getting here
    # means training, conversion and quantization needed no download.
    assert exported.bundle.is_dir()
    assert exported.manifest.variants["fp32"].metrics["image_auroc"] >= 0.9


def test_manifest_records_what_the_device_needs(exported):
    m = load_bundle(exported.bundle).manifest  # verifies every sha256 too
    raw = json.loads((exported.bundle / "manifest.json").read_text())
    assert m.model.type == "patchcore" and m.model.backbone == "tf_efficientnet_lite0"
    assert m.input.height == m.input.width == 128 and m.input.layout == "NHWC"
    assert m.input.normalization["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert set(m.variants) == {"fp32", "int8"} and m.default_variant == "int8"
    for variant in m.variants.values():
        assert variant.threshold.method == "f1" and np.isfinite(variant.threshold.value)
        assert variant.threshold.inputs["split"] == "validation"
        assert {"image_auroc", "pr_auc", "f1", "precision", "recall", "validation_auroc"} <= set(variant.metrics)
        assert {"recall_scratch", "recall_stain", "recall_hole"} <= set(variant.metrics)
    assert m.metrics["int8"]["gate"] == "pass" and exported.gate.passed
    assert {"spearman_vs_fp32", "verdict_agreement_vs_fp32", "validation_auroc_drop"} <= set(m.metrics["int8"])
    assert {"anomalib", "openvino", "nncf"} <= set(m.versions)
    assert raw["created"] and all(len(f["sha256"]) == 64 and f["size"] > 0 for f in raw["files"].values())
    assert {"model.xml", "model.bin", "model_int8.xml", "model_int8.bin", "memory_bank.npy"} <= set(m.files)
    assert {"features.xml", "features_int8.xml"} <= set(m.files)
    assert not any(name.startswith("report") for name in m.files), "the report is not part of the runtime files"


def test_ir_takes_one_frame_and_carries_no_threshold(exported):
    import openvino as ov

    for xml in ("model.xml", "model_int8.xml"):
        model = ov.Core().read_model(exported.bundle / xml)
        assert list(model.input(0).get_partial_shape().to_shape()) == [1, 128, 128, 3]
        assert {o.get_any_name() for o in model.outputs} == {"pred_score", "anomaly_map"}
    int8_ops = {op.get_type_name() for op in ov.Core().read_model(exported.bundle / "model_int8.xml").get_ops()}
    assert "FakeQuantize" in int8_ops


@pytest.fixture(scope="module")
def anomalib_scores(exported):
    """Image scores from anomalib's own Lightning model via Engine.predict."""
    from anomalib.data import PredictDataset
    from torch.utils.data import DataLoader

    trained = exported.trained
    scores = {}
    for path in exported.test_paths:
        dataset = PredictDataset(path=path, image_size=None)
        for batch in trained.engine.predict(
            model=trained.module, dataloaders=DataLoader(dataset, collate_fn=dataset.collate_fn)
        ):
            scores[path] = (float(batch.pred_score.reshape(-1)[0]), bool(batch.pred_label.reshape(-1)[0]))
    return np.array([scores[p][0] for p in exported.test_paths]), np.array([scores[p][1] for p in exported.test_paths])


@pytest.mark.parametrize(("variant", "min_spearman"), [("fp32", 0.99), ("int8", 0.95)])
def test_runtime_scores_agree_with_anomalib(exported, anomalib_scores, variant, min_spearman):
    theirs, their_labels = anomalib_scores
    ours = exported.scores[variant]
    ours_ng = ours >= exported.manifest.variants[variant].threshold.value
    assert spearman(ours, theirs) >= min_spearman
    assert (ours_ng == their_labels).mean() >= 0.95
