"""anomalib's own deploy path for the same model, as the benchmark's reference (export extra).

The reference is PatchCore trained the way an anomalib user would: the same backbone, weights,
layers, input size and coreset ratio as the bundle, anomalib's greedy coreset and its default
pre-processor, then ``Engine.export`` to a Torch checkpoint and to OpenVINO IR, run through
anomalib's ``TorchInferencer`` and ``OpenVINOInferencer``. Other layers can be given for the
reference, e.g. to hold a bundle with fewer layers against the default PatchCore configuration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_ad.bundle import Manifest
from edge_ad.calibrate.metrics import auroc
from edge_ad.datasets.layout import find_category, read_images

__all__ = ["bench_anomalib"]

logger = logging.getLogger(__name__)


def _latencies(run: Callable[[np.ndarray], object], images: list[np.ndarray], frames: int) -> np.ndarray:
    for image in images[:3]:  # warm-up
        run(image)
    out = np.empty(frames)
    for i in range(frames):
        started = time.perf_counter()
        run(images[i % len(images)])
        out[i] = (time.perf_counter() - started) * 1000
    return out


def _stats(ms: np.ndarray, batch: int = 1) -> dict[str, float]:
    """Latency of one call (a station's frame; padded to the IR's batch when it has a fixed one)."""
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "batch": batch, "per_image_p50_ms": p50 / batch}


def _recipe(data: Path, manifest: Manifest, coreset: str):
    from edge_ad.export.recipe import ExportRecipe, ModelOptions

    spec = manifest.model
    options = ModelOptions(
        type="patchcore",
        backbone=spec.backbone,
        layers=spec.layers,
        image_size=manifest.input.height,
        coreset=coreset,
        coreset_ratio=float(spec.params["coreset_ratio"]),
    )
    return ExportRecipe(data=data, model=options, seed=int(spec.params.get("seed", 0)))


def _fit_ours(data: Path, manifest: Manifest, workdir: Path) -> dict[str, float]:
    """Fit time of edge_ad's own training with the bundle's settings (feature extraction + exact greedy coreset)."""
    from edge_ad.export.models import train

    trained = train(find_category(data), _recipe(data, manifest, "greedy"), workdir)
    return {"fit_s": round(trained.fit_seconds, 2), "coreset_s": trained.params["coreset_seconds"]}


def _train_reference(data: Path, manifest: Manifest, workdir: Path, layers: list[str]):
    """Anomalib PatchCore with the bundle's settings and ``layers``: (engine, module, fit s, coreset s)."""
    from anomalib.engine import Engine
    from anomalib.models import Patchcore
    from lightning.pytorch import seed_everything

    from edge_ad.export.models import datamodule, feature_extractor
    from edge_ad.export.weights import load_backbone_weights, packaged_weights

    spec, size = manifest.model, manifest.input.height
    if spec.type != "patchcore":
        raise ValueError(f"the anomalib reference is PatchCore; this bundle is {spec.type}")
    seed_everything(int(spec.params.get("seed", 0)), workers=True)
    module = Patchcore(
        backbone=spec.backbone,
        layers=layers,
        pre_trained=False,
        coreset_sampling_ratio=float(spec.params["coreset_ratio"]),
        num_neighbors=int(spec.params.get("num_neighbors", 9)),
        pre_processor=Patchcore.configure_pre_processor(image_size=(size, size)),
    )
    load_backbone_weights(feature_extractor(module), packaged_weights(spec.backbone))
    recipe = _recipe(data, manifest, "anomalib")
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=workdir, enable_model_summary=False)
    coreset = {}
    anomalib_fit = module.fit  # anomalib's memory-bank step: greedy coreset over all patches

    def timed_fit() -> None:
        started = time.perf_counter()
        anomalib_fit()
        coreset["s"] = time.perf_counter() - started

    module.fit = timed_fit
    started = time.perf_counter()
    engine.fit(model=module, datamodule=datamodule(find_category(data), recipe))
    fit_s = time.perf_counter() - started
    del module.fit  # back to the class's method: Engine.export(TORCH) pickles the module
    return engine, module, fit_s, coreset["s"]


def bench_anomalib(
    data: Path, manifest: Manifest, images: list[np.ndarray], frames: int, layers: list[str] | None = None
) -> dict:
    """Fit, export and run anomalib's reference; latency on ``images`` and AUROC on ``data``'s test set.

    ``layers``: the reference's backbone layers (default: the bundle's).
    """
    import torch
    from anomalib.deploy import ExportType, OpenVINOInferencer, TorchInferencer

    torch.set_num_threads(os.cpu_count() or 1)
    rgb = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images]
    items = find_category(data).test_images()
    test_rgb = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in read_images([p for p, _, _ in items], "test")]
    labels = np.array([label for _, label, _ in items])
    size = manifest.input.height
    with tempfile.TemporaryDirectory(prefix="edge-ad-anomalib-") as tmp:
        workdir = Path(tmp)
        layers = layers or manifest.model.layers
        engine, module, fit_s, coreset_s = _train_reference(data, manifest, workdir, layers)
        pt = engine.export(model=module, export_type=ExportType.TORCH, export_root=workdir)
        xml = engine.export(model=module, export_type=ExportType.OPENVINO, export_root=workdir, input_size=(size, size))
        os.environ.setdefault("TRUST_REMOTE_CODE", "1")  # our own checkpoint, written a moment ago
        torch_inf = TorchInferencer(path=pt, device="cpu")
        with contextlib.chdir(workdir):  # it writes an 'openvino_cache' folder into the working directory
            # pinned like ours: the plugin default would be bf16 on bf16 CPUs and compare unlike with like
            ov_inf = OpenVINOInferencer(path=xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
        first = ov_inf.input_blob.get_partial_shape()[0]
        batch = first.get_length() if first.is_static else 1  # anomalib's IR may come with a fixed batch

        def ov_run(image: np.ndarray):
            return ov_inf.predict(np.stack([image] * batch) if batch > 1 else image)

        def torch_run(image: np.ndarray):
            with torch.inference_mode():
                return torch_inf.predict(image)

        def score(run: Callable[[np.ndarray], object], image: np.ndarray) -> float:
            return float(np.asarray(run(image).pred_score).reshape(-1)[0])

        rows = {
            "anomalib_openvino": _stats(_latencies(ov_run, rgb, frames), batch),
            "anomalib_torch": _stats(_latencies(torch_run, rgb, frames)),
        }
        rows["anomalib_openvino"]["auroc"] = auroc(labels, np.array([score(ov_run, im) for im in test_rgb]))
        rows["anomalib_torch"]["auroc"] = auroc(labels, np.array([score(torch_run, im) for im in test_rgb]))
        ours = _fit_ours(data, manifest, workdir / "ours")
    return {
        "export": {
            "anomalib": {"fit_s": round(fit_s, 2), "coreset_s": round(coreset_s, 3)},
            "edge_ad": ours,
        },
        "bank_rows": int(module.model.memory_bank.shape[0]),
        "layers": layers,
        "rows": rows,
    }
