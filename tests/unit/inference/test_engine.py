from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.errors import BundleError, ModelLoadError
from edge_ad.inference import AnomalyModel, pick_device
from edge_ad.types import Frame
from tests.support.tiny_bundle import SIZE, defect_image, good_image


def frame(image: np.ndarray) -> Frame:
    return Frame(image=image, ts=0.0, index=1)


def test_good_scores_below_and_defects_above_threshold(tiny_models, tmp_path):
    model = AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "CPU", cache_dir=tmp_path / "cache")
    goods = [model.infer(frame(good_image(s))).score for s in range(30, 40)]
    defects = [model.infer(frame(defect_image(s))).score for s in range(30, 40)]
    assert max(goods) < model.threshold < min(defects)
    result = model.infer(frame(defect_image(1)))
    assert result.anomaly_map.shape == (SIZE // 4, SIZE // 4) and result.latency_ms > 0
    assert any((tmp_path / "cache").iterdir()), "compiled blob cache not written to cache_dir"


def test_frames_of_another_size_are_resized(tiny_models):
    model = AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "CPU")
    big = np.kron(defect_image(3), np.ones((4, 4, 1), np.uint8))  # 128x128 version of the same part
    assert model.infer(frame(big)).score > model.threshold


def test_a_variant_the_bundle_lacks_is_an_error_not_a_silent_fallback(tiny_models):
    with pytest.raises(BundleError, match="variant 'int8' not in the bundle"):
        AnomalyModel(load_bundle(tiny_models / "tiny"), "int8", "CPU")
    with pytest.raises(ModelLoadError, match="variant 'int4' unknown"):
        AnomalyModel(load_bundle(tiny_models / "tiny"), "int4", "CPU")


@pytest.mark.parametrize(
    ("requested", "devices", "expected", "noted"),
    [
        ("CPU", ["CPU"], "CPU", False),
        ("GPU", ["CPU"], "CPU", True),  # no iGPU: fall back and say so
        ("GPU.1", ["CPU", "GPU.0"], "CPU", True),
        ("GPU", ["CPU", "GPU.0"], "GPU", False),
        ("AUTO", ["CPU", "GPU.0"], "CPU", True),  # earlier installs wrote AUTO: it would pick and switch devices
    ],
)
def test_pick_device(requested, devices, expected, noted):
    class FakeCore:
        available_devices = devices

    device, note = pick_device(FakeCore(), requested)  # type: ignore[arg-type]
    assert device == expected and (note is not None) == noted


def test_gpu_request_on_this_machine_falls_back_to_cpu(tiny_models):
    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("machine has a GPU")
    model = AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "GPU")
    assert model.device == "CPU" and "GPU not available" in model.fallback_note


def test_ir_with_wrong_input_shape_is_refused(tiny_models):
    bundle = load_bundle(tiny_models / "tiny")
    manifest = bundle.manifest.model_copy(update={"input": bundle.manifest.input.model_copy(update={"height": 64})})
    with pytest.raises(ModelLoadError, match=r"input shape \[1,32,32,3\] does not match manifest \[1, 64, 32, 3\]"):
        AnomalyModel(type(bundle)(path=bundle.path, manifest=manifest), "fp32", "CPU")


def test_pipeline_returns_every_frame_in_order_with_the_synchronous_scores(tiny_models):
    from edge_ad.inference import InferPipeline

    model = AnomalyModel(load_bundle(tiny_models / "tiny"), "fp32", "CPU", streams=3)
    images = [good_image(s) if s % 3 else defect_image(s) for s in range(40, 64)]
    expected = [model.infer(frame(img)).score for img in images]
    pipeline = InferPipeline(model, jobs=3)
    done = []
    for i, img in enumerate(images):
        done += pipeline.submit(Frame(image=img, ts=0.0, index=i), context=i)
        assert pipeline.in_flight <= pipeline.limit == 6  # results wait behind a slow older frame, bounded
    done += pipeline.drain()
    assert pipeline.in_flight == 0
    assert [d.context for d in done] == list(range(len(images)))
    assert [d.frame.index for d in done] == list(range(len(images)))
    np.testing.assert_allclose([d.result.score for d in done], expected, rtol=1e-5)
    assert all(d.model is model and d.result.anomaly_map.shape == (SIZE // 4, SIZE // 4) for d in done)
