"""Precision is explicit: what edge_ad asks for is what the compiled model reports, whatever the plugin's default."""

from __future__ import annotations

import cv2
import openvino as ov
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.errors import ModelLoadError
from edge_ad.inference import AnomalyModel
from edge_ad.inference.device import capabilities, cpu_flags
from edge_ad.inference.precision import RUN_VARIANTS, compile_pinned, plugin_default_precision, read_precision
from tests.support.fake_plugin import Bf16DefaultPlugin
from tests.support.tiny_bundle import defect_image, good_image, tiny_features

DEVICES = [d for d in ov.Core().available_devices if d.split(".")[0] in {"CPU", "GPU"}]


@pytest.mark.parametrize("device", DEVICES)
def test_every_variant_reads_back_the_precision_it_names_on_every_device(tiny_models, device):
    bundle = load_bundle(tiny_models / "tiny")
    caps = capabilities(ov.Core(), device)
    tried = []
    for run in RUN_VARIANTS.values():
        if run.ir not in bundle.runnable() or run.offered_on(device, caps) is not None:
            continue
        try:
            model = AnomalyModel(bundle, run.name, device)
        except ModelLoadError as exc:  # a plugin that lists the capability yet compiles another precision
            assert run.reduced and "although" in str(exc), exc
            continue
        assert read_precision(model.compiled) == model.precision == run.precision, (device, run.name)
        tried.append(run.name)
    assert "fp32" in tried  # int8 is read back on a real INT8 IR in tests/integration/test_export.py


def test_a_plugin_defaulting_to_bf16_still_compiles_f32_when_edge_ad_asks(tiny_models, monkeypatch):
    plugin = Bf16DefaultPlugin()
    monkeypatch.setattr(ov, "Core", plugin.make)
    core = ov.Core()
    assert plugin_default_precision(core, "CPU") == "bf16"
    assert read_precision(core.compile_model(tiny_features(), "CPU")) == "bf16"  # what happens unasked
    plugin.asked.clear()
    assert read_precision(compile_pinned(core, tiny_features(), "CPU", "f32")) == "f32"
    model = AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "CPU")
    assert model.precision == "f32" and plugin.asked == ["f32", "f32"]


def test_a_plugin_that_ignores_the_hint_is_refused():
    class Stubborn:
        def compile_model(self, model, device, config):
            class Compiled:
                def get_property(self, name):
                    assert name == "INFERENCE_PRECISION_HINT"
                    return ov.Type.bf16

            return Compiled()

    with pytest.raises(ModelLoadError, match=r"model.xml: CPU compiled in bf16 although f32 was asked"):
        compile_pinned(Stubborn(), tiny_features(), "CPU", "f32", what="model.xml")  # type: ignore[arg-type]


def test_reduced_precision_moves_scores_on_this_cpu_and_f32_does_not(tiny_models):
    """On a bf16 CPU the plugin's default is bf16 and scores move; pinned f32 reproduces the export exactly."""
    core = ov.Core()
    if "BF16" not in capabilities(core, "CPU"):
        pytest.skip("CPU without native bf16: its plugin default is f32 (see BENCHMARKS.md)")
    assert plugin_default_precision(core, "CPU") == "bf16"
    bundle = load_bundle(tiny_models / "tiny")
    f32, bf16 = AnomalyModel(bundle, "fp32", "CPU"), AnomalyModel(bundle, "bf16", "CPU")
    images = [good_image(s) for s in range(5)] + [defect_image(s) for s in range(5)]
    exported = {g.file: g.scores["fp32"] for g in bundle.manifest.golden}
    assert f32.score_images(images).tolist() != bf16.score_images(images).tolist()
    for golden in bundle.manifest.golden:  # f32 on this machine == f32 on the machine that built the bundle
        image = cv2.imread(str(bundle.path / golden.file))
        assert f32.score_images([image])[0] == pytest.approx(exported[golden.file], rel=1e-6)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16 avx512_vnni\n")
    assert cpu_flags(info) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert cpu_flags(tmp_path / "absent") == []
