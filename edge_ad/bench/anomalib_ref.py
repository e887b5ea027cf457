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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ad.bundle import Manifest
from edge_ad.calibrate.metrics import auroc
from edge_ad.datasets.layout import find_category, read_images

__all__ = ["Reference", "ReferenceSpec", "bench_anomalib", "latencies", "to_rgb", "train_reference"]

logger = logging.getLogger(__name__)


def latencies(run: Callable[[np.ndarray], object], images: list[np.ndarray], frames: int) -> np.ndarray:
    """Milliseconds of ``frames`` calls of ``run`` over ``images`` in turn, after three warm-up calls."""
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


@dataclass(frozen=True)
class ReferenceSpec:
    """The PatchCore settings the reference shares with the model it is compared with."""

    backbone: str
    layers: list[str]
    size: int
    coreset_ratio: float
    num_neighbors: int = 9
    seed: int = 0

    @classmethod
    def of(cls, manifest: Manifest, layers: list[str] | None = None) -> ReferenceSpec:
        """A bundle's settings (``layers``: the reference's own, default the bundle's)."""
        spec = manifest.model
        if spec.type != "patchcore":
            raise ValueError(f"the anomalib reference is PatchCore; this bundle is {spec.type}")
        return cls(
            backbone=spec.backbone,
            layers=list(layers or spec.layers),
            size=manifest.input.height,
            coreset_ratio=float(spec.params["coreset_ratio"]),
            num_neighbors=int(spec.params.get("num_neighbors", 9)),
            seed=int(spec.params.get("seed", 0)),
        )


def _recipe(data: Path, spec: ReferenceSpec, coreset: str):
    from edge_ad.export.recipe import ExportRecipe, ModelOptions

    options = ModelOptions(
        type="patchcore",
        backbone=spec.backbone,
        layers=spec.layers,
        image_size=spec.size,
        coreset=coreset,
        coreset_ratio=spec.coreset_ratio,
    )
    return ExportRecipe(data=data, model=options, seed=spec.seed)


def _fit_ours(data: Path, spec: ReferenceSpec, workdir: Path) -> dict[str, float]:
    """Fit time of edge_ad's own training with the same settings (feature extraction + exact greedy coreset)."""
    from edge_ad.export.models import train

    trained = train(find_category(data), _recipe(data, spec, "greedy"), workdir)
    return {"fit_s": round(trained.fit_seconds, 2), "coreset_s": trained.params["coreset_seconds"]}


@dataclass
class Reference:
    """anomalib's PatchCore, trained and exported the way an anomalib user would, and its inferencers."""

    openvino: Callable[[np.ndarray], object]  # RGB frame -> anomalib's prediction
    torch: Callable[[np.ndarray], object]
    batch: int  # the OpenVINO IR's fixed batch (one frame costs one call of that batch)
    fit_s: float
    coreset_s: float
    bank_rows: int

    def score(self, rgb: np.ndarray, path: str = "openvino") -> float:
        """The image score anomalib gives one RGB frame."""
        return float(np.asarray(getattr(self, path)(rgb).pred_score).reshape(-1)[0])


def train_reference(data: Path, spec: ReferenceSpec, workdir: Path) -> Reference:
    """Fit anomalib's PatchCore on ``data`` with ``spec``, export it (Torch and OpenVINO) into ``workdir``."""
    import torch
    from anomalib.deploy import ExportType, OpenVINOInferencer, TorchInferencer
    from anomalib.engine import Engine
    from anomalib.models import Patchcore
    from lightning.pytorch import seed_everything

    from edge_ad.export.families.base import feature_extractor
    from edge_ad.export.families.data import datamodule
    from edge_ad.export.weights import load_backbone_weights, packaged_weights

    torch.set_num_threads(os.cpu_count() or 1)
    seed_everything(spec.seed, workers=True)
    module = Patchcore(
        backbone=spec.backbone,
        layers=spec.layers,
        pre_trained=False,
        coreset_sampling_ratio=spec.coreset_ratio,
        num_neighbors=spec.num_neighbors,
        pre_processor=Patchcore.configure_pre_processor(image_size=(spec.size, spec.size)),
    )
    load_backbone_weights(feature_extractor(module), packaged_weights(spec.backbone))
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=workdir, enable_model_summary=False)
    coreset = {}
    anomalib_fit = module.fit  # anomalib's memory-bank step: greedy coreset over all patches

    def timed_fit() -> None:
        started = time.perf_counter()
        anomalib_fit()
        coreset["s"] = time.perf_counter() - started

    module.fit = timed_fit
    started = time.perf_counter()
    engine.fit(model=module, datamodule=datamodule(find_category(data), _recipe(data, spec, "anomalib")))
    fit_s = time.perf_counter() - started
    del module.fit  # back to the class's method: Engine.export(TORCH) pickles the module
    pt = engine.export(model=module, export_type=ExportType.TORCH, export_root=workdir)
    xml = engine.export(
        model=module, export_type=ExportType.OPENVINO, export_root=workdir, input_size=(spec.size, spec.size)
    )
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

    return Reference(ov_run, torch_run, batch, fit_s, coreset["s"], int(module.model.memory_bank.shape[0]))


def to_rgb(images: list[np.ndarray]) -> list[np.ndarray]:
    """OpenCV's BGR frames as the RGB arrays anomalib's inferencers take."""
    return [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images]


def bench_anomalib(
    data: Path, manifest: Manifest, images: list[np.ndarray], frames: int, layers: list[str] | None = None
) -> dict:
    """Fit, export and run anomalib's reference; latency on ``images`` and AUROC on ``data``'s test set.

    ``layers``: the reference's backbone layers (default: the bundle's).
    """
    spec = ReferenceSpec.of(manifest, layers)
    rgb = to_rgb(images)
    items = find_category(data).test_images()
    test_rgb = to_rgb(read_images([p for p, _, _ in items], "test"))
    labels = np.array([label for _, label, _ in items])
    with tempfile.TemporaryDirectory(prefix="edge-ad-anomalib-") as tmp:
        workdir = Path(tmp)
        ref = train_reference(data, spec, workdir)
        rows = {
            "anomalib_openvino": _stats(latencies(ref.openvino, rgb, frames), ref.batch),
            "anomalib_torch": _stats(latencies(ref.torch, rgb, frames)),
        }
        for path in ("openvino", "torch"):
            rows[f"anomalib_{path}"]["auroc"] = auroc(labels, np.array([ref.score(im, path) for im in test_rgb]))
        ours = _fit_ours(data, spec, workdir / "ours")
    return {
        "export": {
            "anomalib": {"fit_s": round(ref.fit_s, 2), "coreset_s": round(ref.coreset_s, 3)},
            "edge_ad": ours,
        },
        "bank_rows": ref.bank_rows,
        "layers": spec.layers,
        "rows": rows,
    }
