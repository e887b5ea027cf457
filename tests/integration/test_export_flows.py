"""FastFlow and Reverse Distillation exported offline on lite0, checked against anomalib and run by the daemon.

Each family is exported once (the synthetic brick set, 128 px, 8 epochs of the default batch 4: anomalib's
optimizers need tens of steps, 40 images in batches of 16 give 3 an epoch) with the network blocked.
FastFlow's INT8 model has its score negated, so its export exercises the gate's refusal
deterministically (its real INT8 is refused here too, by a 0.03 drop on an AMX/VNNI CPU, but that is
the CPU's call); Reverse Distillation's real INT8 is judged by the default gate (passed in 2 of 3 runs).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.calibrate.metrics import spearman
from edge_ad.commissioning import read_record
from tests.support.exports import anomalib_predict, judge_replay, negated_score

pytestmark = [pytest.mark.export, pytest.mark.integration]

REFUSED = "fastflow"  # its INT8 is made bad on purpose: the gate must keep FP32
LAYERS = ["blocks.1", "blocks.2", "blocks.3"]


@pytest.fixture(scope="module", params=["fastflow", "reverse_distillation"])
def flow_export(request, tmp_path_factory, dataset):
    """One export per family, every non-loopback connection failing."""
    from edge_ad.export import pipeline
    from edge_ad.export.recipe import ExportRecipe, ModelOptions
    from tests.support.net import block_network

    kind = request.param
    recipe = ExportRecipe(data=dataset, out=tmp_path_factory.mktemp("models"), model=ModelOptions(type=kind, epochs=8))
    with pytest.MonkeyPatch.context() as patch, block_network() as attempts:
        if kind == REFUSED:
            real = pipeline.quantize
            patch.setattr(pipeline, "quantize", lambda *args, **kwargs: negated_score(real(*args, **kwargs)))
        result = pipeline.export_bundle(recipe)
    result.blocked_attempts = attempts
    return result


def test_export_is_offline_and_writes_the_usual_bundle(flow_export):
    assert not flow_export.blocked_attempts, "the export tried the network"
    m = load_bundle(flow_export.bundle).manifest  # verifies every sha256 too
    kind = m.model.type
    assert m.model.backbone == "tf_efficientnet_lite0" and m.model.layers == LAYERS
    assert m.model.params["epochs"] == 8 and m.input.height == m.input.width == 128
    assert set(m.outputs.values()) == {"pred_score", "anomaly_map"}
    assert {"model.xml", "model.bin", "model_int8.xml", "model_int8.bin", "report/report.html"} <= set(m.files)
    assert [g.label for g in m.golden] == [0, 1] and m.acceptance.images > 0
    fp32 = m.variants["fp32"]
    assert fp32.threshold.method == "f1" and np.isfinite(fp32.threshold.value)
    # 16 good and 18 defects split in two: a model that learnt nothing sits near 0.5
    assert fp32.metrics["image_auroc"] >= 0.9, f"{kind}: {fp32.metrics}"
    assert fp32.metrics["validation_auroc"] >= 0.85, f"{kind}: {fp32.metrics}"


def test_runtime_scores_agree_with_anomalib(flow_export):
    theirs, _ = anomalib_predict(flow_export)
    # anomalib's post-processor clips its normalised scores to [0, 1]: rank the unclipped ones, and the
    # clipped ones must be ours' extremes too
    free = (theirs > 0) & (theirs < 1)
    for variant in ("fp32", "int8") if flow_export.gate.passed else ("fp32",):
        ours = flow_export.scores[variant]
        assert spearman(ours[free], theirs[free]) >= (0.99 if variant == "fp32" else 0.95), variant
        if variant == "fp32" and (theirs >= 1).any():
            assert ours[theirs >= 1].min() > ours[free].max()


def test_int8_gate_passes_or_refuses_as_the_model_deserves(flow_export):
    m = flow_export.manifest
    gate = m.metrics["int8"]
    if m.model.type == REFUSED:  # the negated score: the gate refuses it, FP32 ships as the default
        assert gate["gate"] == "rejected" and not flow_export.gate.passed
        assert gate["validation_auroc_drop"] > 0.5
        assert m.variants["int8"].status == "rejected" and m.default_variant == "fp32"
    else:  # the real NNCF model (encoder INT8, bottleneck and decoder FP32): measured drops 0 and 0.014
        assert gate["max_drop"] == 0.003 and (gate["gate"] == "pass") == flow_export.gate.passed
        assert m.default_variant == ("int8" if flow_export.gate.passed else "fp32")
        assert gate["spearman_vs_fp32"] >= 0.95


def test_daemon_judges_fresh_frames_over_mqtt(flow_export, mosquitto, tmp_path):
    kind = flow_export.manifest.model.type
    # int8 pinned, as a station would: it runs if commissioning accepts it here, else fp32
    verdicts, labels = judge_replay(flow_export.bundle, mosquitto, tmp_path, f"flows-{kind}", variant="int8")
    assert [v["seq"] for v in verdicts] == list(range(1, len(labels) + 1)), "missing, duplicated or reordered"
    assert [v["frame"]["origin"] for v in verdicts] == sorted(labels), "frames judged out of order"
    accepted = read_record(tmp_path / "state", load_bundle(flow_export.bundle)).candidates["int8"].accepted
    if kind == REFUSED:
        assert not accepted, "a rejected INT8 never runs"
    runs = "int8" if accepted else "fp32"
    assert all(v["model"]["variant"] == runs and v["model"]["precision"] == "f32" for v in verdicts)
    good = [v["verdict"] for v in verdicts if labels[v["frame"]["origin"]] == 0]
    bad = [v["verdict"] for v in verdicts if labels[v["frame"]["origin"]] == 1]
    assert len(good) == 10 and len(bad) == 12
    # measured: FastFlow 9/10 OK and 12/12 NG, RD 8/10 and 10/12; a constant or random score fails a class
    assert good.count("OK") >= 7 and bad.count("NG") >= 9, f"{kind}: good {good}, defects {bad}"
