"""Commissioning: one decision per bundle version and device, kept across restarts, asked by everyone."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from edge_ad.bundle import AcceptanceSet, load_bundle, read_acceptance
from edge_ad.commissioning import (
    CandidateResult,
    choose,
    commission,
    load_model,
    read_record,
    resolve_variant,
    write_record,
)
from edge_ad.commissioning import measure as measure_module
from edge_ad.commissioning.measure import judge_candidate
from edge_ad.config import ModelConfig
from edge_ad.errors import BundleError, ModelLoadError
from edge_ad.inference.device import capabilities
from edge_ad.inference.selftest import self_test
from tests.support.fake_plugin import Bf16DefaultPlugin
from tests.support.tiny_bundle import make_tiny_bundle

BF16_CPU = "BF16" in capabilities(ov.Core(), "CPU")


def candidate(name: str, p50: float, accepted: bool = True, reasons: tuple[str, ...] = ()) -> CandidateResult:
    ir = "int8" if name == "int8" else "fp32"
    precision = {"bf16": "bf16", "f16": "f16"}.get(name, "f32")
    return CandidateResult(
        variant=name, ir=ir, precision=precision, threshold=1.0, accepted=accepted, reasons=list(reasons),
        agreement=1.0 if accepted else 0.9, p50_ms=p50,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("times", "refused", "expected"),
    [
        ({"fp32": 10.0, "int8": 6.0}, [], "int8"),  # clearly faster and accepted
        ({"fp32": 10.0, "int8": 9.7}, [], "fp32"),  # less than 5 % faster: FP32 keeps the job
        ({"fp32": 10.0, "int8": 6.0, "bf16": 4.0}, ["bf16"], "int8"),  # the fastest is refused
        ({"fp32": 10.0, "int8": 12.0, "bf16": 7.0}, [], "bf16"),
        ({"fp32": 10.0, "int8": 6.0}, ["int8"], "fp32"),  # INT8 faster but disagrees with FP32
        ({"fp32": 10.0, "int8": 6.0}, ["fp32"], None),  # FP32 itself does not reproduce the export
    ],
)
def test_choose_the_fastest_accepted_variant(times, refused, expected):
    results = {n: candidate(n, ms, n not in refused, ("differs",) if n in refused else ()) for n, ms in times.items()}
    chosen, reason = choose(results)
    assert chosen == expected
    assert (chosen is None) == ("does not reproduce" in reason)
    for name in refused:
        assert name == "fp32" or f"{name}: differs" in reason


def test_a_variant_is_refused_for_one_flipped_verdict_or_an_auroc_loss_beyond_the_budget():
    labels = np.array([0, 0, 0, 1, 1, 1])
    fp32 = np.array([1.0, 2.0, 3.0, 7.0, 8.0, 9.0])
    ref = AcceptanceSet(np.zeros((6, 2, 2, 3), np.uint8), labels, np.array(["good"] * 3 + ["x"] * 3), fp32)
    same = judge_candidate(fp32 * 1.01, 5.0, ref, 5.0, budget=0.003, min_agreement=1.0)
    assert same["accepted"] and same["agreement"] == 1.0 and same["drift_max"] == pytest.approx(0.01)
    flipped = judge_candidate(fp32 * np.array([1, 1, 1.8, 1, 1, 1]), 5.0, ref, 5.0, budget=0.003, min_agreement=1.0)
    assert not flipped["accepted"] and flipped["disagreements"] == 1
    assert flipped["reasons"][0].startswith("1 of 6 verdicts differ from FP32's")
    assert judge_candidate(fp32 * np.array([1, 1, 1.8, 1, 1, 1]), 5.0, ref, 5.0, 0.003, min_agreement=0.8)["accepted"]
    worse = judge_candidate(np.array([1.0, 2.0, 7.5, 7.0, 8.0, 9.0]), 7.6, ref, 5.0, budget=0.003, min_agreement=0.5)
    assert not worse["accepted"] and "below FP32's (budget 0.0030)" in worse["reasons"][-1]


@pytest.fixture
def station(tmp_path):
    version = make_tiny_bundle(tmp_path / "models")
    return load_bundle(version), tmp_path / "state"


def test_first_start_commissions_and_restarts_reuse_the_record(station, monkeypatch):
    bundle, state = station
    config = ModelConfig(path=bundle.path)
    first = resolve_variant(bundle, config, state)
    stored = read_record(state, bundle)
    assert stored == first.record and stored.chosen == first.variant
    assert stored.candidates["fp32"].precision == "f32" and stored.candidates["fp32"].agreement == 1.0
    assert set(stored.candidates) == {"fp32", "int8", "bf16", "f16"}  # measured, or refused with the reason
    assert stored.candidates["f16"].reasons == ["f16 is offered on GPU only"]
    assert stored.context == "first start"

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a restart measured again")

    monkeypatch.setattr("edge_ad.commissioning.resolve.commission", must_not_measure)
    for _ in range(3):  # no flip-flop: the same variant at every restart
        assert resolve_variant(bundle, config, state).variant == first.variant
    with pytest.raises(AssertionError, match="measured again"):  # a changed key is measured again
        resolve_variant(bundle, config.model_copy(update={"min_agreement": 0.9}), state)
    with pytest.raises(AssertionError, match="measured again"):
        resolve_variant(bundle, config, state, force=True)  # edge-ad models commission


def test_a_record_from_another_cpu_is_not_trusted(station):
    bundle, state = station
    config = ModelConfig(path=bundle.path)
    record = resolve_variant(bundle, config, state).record
    other = record.model_copy(update={"key": record.key.model_copy(update={"cpu_flags": ["avx2"]})})
    write_record(state, other)
    assert resolve_variant(bundle, config, state, commission_missing=False).record is None
    assert resolve_variant(bundle, config, state).record.key.cpu_flags == record.key.cpu_flags


def _with(record, **changes):
    candidates = {n: c.model_copy(update=changes.get(n, {})) for n, c in record.candidates.items()}
    return record.model_copy(update={"candidates": candidates, "chosen": changes.get("chosen", record.chosen)})


def test_a_device_whose_default_is_bf16_runs_f32_unless_bf16_was_commissioned(station, monkeypatch):
    bundle, state = station
    plugin = Bf16DefaultPlugin()
    monkeypatch.setattr(ov, "Core", plugin.make)
    config = ModelConfig(path=bundle.path)
    record = resolve_variant(bundle, config, state).record  # measured on the fake device
    assert record.plugin_default_precision == "bf16" and "bf16" in plugin.asked  # bf16 is measured, never assumed
    refused = {"accepted": False, "reasons": ["3 of 16 verdicts differ from FP32's"]}
    write_record(state, _with(record, bf16=refused, chosen="fp32"))
    plugin.asked.clear()
    model = load_model(bundle, config, state)
    assert (model.variant_name, model.precision, plugin.asked) == ("fp32", "f32", ["f32"])
    assert model.commissioning["plugin_default_precision"] == "bf16"
    pinned = load_model(bundle, config.model_copy(update={"variant": "bf16"}), state)
    assert (pinned.variant_name, pinned.precision) == ("fp32", "f32")
    assert pinned.variant_note == (
        "model.variant bf16 refused by commissioning (3 of 16 verdicts differ from FP32's); running fp32"
    )
    write_record(state, _with(record, bf16={"accepted": True, "reasons": []}, chosen="bf16"))
    plugin.asked.clear()
    model = load_model(bundle, config, state)
    assert (model.variant_name, model.precision, plugin.asked) == ("bf16", "bf16", ["bf16"])
    assert model.reference_scores == record.candidates["bf16"].golden
    assert self_test(model, 0.02) == 2  # against what bf16 scored at commissioning on this device


@pytest.mark.skipif(not BF16_CPU, reason="needs a CPU with native bf16")
def test_bf16_is_measured_against_fp32_and_its_drift_recorded(station):
    bundle, _ = station
    record = commission(bundle, "CPU")
    bf16 = record.candidates["bf16"]
    assert bf16.precision == "bf16" and bf16.drift_max > 1e-4  # reduced precision moves scores
    assert record.candidates["fp32"].drift_max == 0.0  # f32 reproduces the export exactly
    assert record.plugin_default_precision == "bf16"


def test_a_bundle_without_acceptance_set_runs_fp32_only(tmp_path):
    bundle = load_bundle(make_tiny_bundle(tmp_path / "models", acceptance=False, int8_alias=True))
    record = commission(bundle, "CPU")
    assert record.chosen == "fp32" and record.candidates["fp32"].accepted and record.acceptance is None
    int8 = record.candidates["int8"]
    assert not int8.accepted and "no acceptance set" in int8.reasons[0] and int8.p50_ms is None  # not even compiled
    resolution = resolve_variant(bundle, ModelConfig(path=bundle.path, variant="int8"), tmp_path / "state")
    assert resolution.variant == "fp32" and "no acceptance set" in resolution.note


def test_fp32_that_does_not_reproduce_the_export_stops_the_station(station, monkeypatch):
    bundle, state = station
    real = measure_module.read_acceptance

    def shifted(b):
        ref = real(b)
        return ref.rescored(ref.fp32_scores[::-1])  # as if this device scored every image differently

    monkeypatch.setattr(measure_module, "read_acceptance", shifted)
    with pytest.raises(ModelLoadError, match=r"commissioning tiny v1 on CPU: FP32 itself does not reproduce"):
        load_model(bundle, ModelConfig(path=bundle.path), state)


def test_an_acceptance_set_that_does_not_match_the_manifest_is_refused(station):
    bundle, _ = station
    spec = bundle.manifest.acceptance.model_copy(update={"images": 99})
    other = type(bundle)(path=bundle.path, manifest=bundle.manifest.model_copy(update={"acceptance": spec}))
    with pytest.raises(
        BundleError, match=r"acceptance.npz: acceptance set holds \(16, 32, 32, 3\) uint8, manifest says 99"
    ):
        read_acceptance(other)


def test_a_forged_record_is_not_trusted_with_a_station_key(tiny_models, tmp_path, monkeypatch):
    """Found by the probe: with write access to the state directory, a record edited to choose a refused variant
    (verdicts changed) or none (a start that always fails) was believed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_ad import integrity
    from edge_ad.bundle import load_bundle
    from edge_ad.commissioning import read_record, resolve_variant
    from edge_ad.commissioning.record import record_path
    from edge_ad.config import ModelConfig

    monkeypatch.setattr(integrity, "_key", None)
    integrity.use_station_key(Ed25519PrivateKey.generate())
    bundle = load_bundle(tiny_models / "tiny")
    resolve_variant(bundle, ModelConfig(path=tiny_models / "tiny"), tmp_path)
    record = read_record(tmp_path, bundle)
    assert record is not None
    path = record_path(tmp_path, record.key.manifest_sha256, record.key.device)
    assert path.with_name(path.name + ".mac").is_file()
    path.write_text(path.read_text().replace('"chosen": "fp32"', '"chosen": null'))
    assert read_record(tmp_path, bundle) is None  # measured again, not believed
