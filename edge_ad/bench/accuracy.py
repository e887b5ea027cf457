"""Accuracy where a point is visible: edge_ad's default export against anomalib's PatchCore (export extra).

For every category and seed, synthetic data is generated at a defect strength where PatchCore is
not saturated (or a given category directory is used, the seed then only varies training). Three
models are fitted on the same training images and scored on the same held-out images (the test
split of :func:`~edge_ad.export.pipeline.split_test`, which no export decision saw):

- ``edge_ad``: the default export (input size chosen from the data, greedy coreset, two-stage
  search, INT8 behind its gate), judged by its default variant, and its FP32 variant;
- ``edge_ad exact full``: the same at the images' size (up to 256 px) with the exact search, FP32 —
  the cause row: it differs from anomalib only in arithmetic;
- ``anomalib``: PatchCore with the same backbone and layers, greedy coreset and exact search, at the
  same size, run by anomalib's ``OpenVINOInferencer`` (pinned to f32).

Per category the AUROC is averaged over seeds; intervals come from a stratified bootstrap inside
each seed's test images, with the same draws for every model, so the difference interval is paired.
Latency is the median of single frames through each deploy path, in the same run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_ad.bench.machine import machine
from edge_ad.calibrate.intervals import seed_mean_intervals
from edge_ad.errors import EdgeAdError

__all__ = ["Case", "accuracy_bench", "accuracy_markdown", "case_data", "seed_mean_intervals"]

logger = logging.getLogger(__name__)

FULL_SIZE = 256  # synthetic images are made at this size; the reference runs at the images' size up to it


@dataclass(frozen=True)
class Case:
    """One category: synthetic (a texture and a defect strength) or a directory."""

    name: str
    strength: float | None = None
    data: Path | None = None

    @classmethod
    def parse(cls, text: str) -> Case:
        """``brick=0.3`` (synthetic texture at that defect strength) or a category directory.

        Raises:
            EdgeAdError: An unknown texture, a strength outside (0, 1], or not a category directory.
        """
        from edge_ad.datasets.layout import find_category
        from edge_ad.datasets.synthetic import CATEGORIES

        if "=" not in text:
            return cls(name=Path(text).name, data=find_category(text).root)
        name, value = text.split("=", 1)
        if name not in CATEGORIES:
            raise EdgeAdError(f"bench: {text}: unknown texture {name!r}; choose from {', '.join(CATEGORIES)}")
        try:
            strength = float(value)
        except ValueError:
            strength = float("nan")
        if not 0 < strength <= 1:
            raise EdgeAdError(f"bench: {text}: the defect strength must be a number in (0, 1], e.g. {name}=0.5")
        return cls(name=name, strength=strength)


def case_data(case: Case, seed: int, root: Path, spec: dict) -> Path:
    """The case's category directory: made synthetic under ``root`` for ``seed``, or the given one."""
    if case.data is not None:
        return case.data
    from edge_ad.datasets.synthetic import DatasetSpec, make_dataset

    made = DatasetSpec(size=FULL_SIZE, seed=seed, strength=case.strength or 1.0, **spec)
    return make_dataset(root / f"{case.name}-{seed}", [case.name], made)[0]


def _p50(run, images: list[np.ndarray], frames: int) -> float:
    from edge_ad.bench.anomalib_ref import latencies

    return float(np.percentile(latencies(run, images, frames), 50))


def _one(case: Case, seed: int, workdir: Path, spec: dict, frames: int) -> dict:
    """Fit the three models on one seed's data; their test-split scores and latencies."""
    from edge_ad.bench.anomalib_ref import ReferenceSpec, to_rgb, train_reference
    from edge_ad.bundle import load_bundle
    from edge_ad.datasets.layout import find_category
    from edge_ad.export.pipeline import export_bundle, split_test
    from edge_ad.export.recipe import ExportRecipe, Int8Options, ModelOptions
    from edge_ad.inference.engine import AnomalyModel
    from edge_ad.types import Frame

    data = case_data(case, seed, workdir / "data", spec)
    _, test = split_test(find_category(data))
    started = time.perf_counter()
    ours = export_bundle(ExportRecipe(data=data, out=workdir / "models", name=f"{case.name}-{seed}", seed=seed))
    export_s = time.perf_counter() - started
    default = ours.manifest.default_variant
    full = min(FULL_SIZE, *ours.manifest.metrics["input_size"]["source"])
    exact = export_bundle(
        ExportRecipe(
            data=data,
            out=workdir / "models",
            name=f"{case.name}-{seed}-exact",
            seed=seed,
            model=ModelOptions(image_size=full, coarse_fraction=None),
            int8=Int8Options(mode="none"),
        )
    )
    reference = ReferenceSpec.of(exact.manifest)
    ref = train_reference(data, reference, workdir / f"anomalib-{case.name}-{seed}")
    rgb = to_rgb(test.images)
    model = AnomalyModel(load_bundle(ours.bundle), variant=default, device="CPU")

    def ours_run(image: np.ndarray) -> object:
        return model.infer(Frame(image=image, ts=0.0, index=1))

    return {
        "seed": seed,
        "data": str(data),
        "labels": test.labels.tolist(),
        "scores": {
            "edge_ad": ours.scores[default].tolist(),
            "edge_ad_fp32": ours.scores["fp32"].tolist(),
            "edge_ad_exact_full": exact.scores["fp32"].tolist(),
            "anomalib": [ref.score(image) for image in rgb],
        },
        "edge_ad": {
            "variant": default,
            "input": ours.manifest.input.height,
            "input_size": ours.manifest.metrics["input_size"],
            "export_s": round(export_s, 1),
            "coreset_s": ours.manifest.model.params.get("coreset_seconds"),
            "p50_ms": _p50(ours_run, test.images, frames),
        },
        "anomalib": {
            "fit_s": round(ref.fit_s, 1),
            "coreset_s": round(ref.coreset_s, 2),
            "p50_ms": _p50(ref.openvino, rgb, frames),
            "batch": ref.batch,
        },
    }


def accuracy_bench(cases: list[Case], seeds: list[int], spec: dict, frames: int = 100) -> dict:
    """Run every case × seed; per case the seed-mean AUROCs with paired intervals against anomalib."""
    results = []
    for case in cases:
        runs = []
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix="edge-ad-accuracy-") as tmp:
                logger.info("accuracy: %s seed %d", case.name, seed)
                runs.append(_one(case, seed, Path(tmp), spec, frames))
        labels = [np.array(r["labels"]) for r in runs]
        scores = {name: [np.array(r["scores"][name]) for r in runs] for name in runs[0]["scores"]}
        results.append(
            {
                "case": case.name,
                "strength": case.strength,
                "runs": runs,
                "summary": seed_mean_intervals(labels, scores, reference="anomalib"),
                "ours_p50_ms": float(np.median([r["edge_ad"]["p50_ms"] for r in runs])),
                "anomalib_p50_ms": float(np.median([r["anomalib"]["p50_ms"] for r in runs])),
            }
        )
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "seeds": seeds,
        "dataset": {"size": FULL_SIZE, **spec},
        "cases": results,
    }


MODELS = {
    "edge_ad": "edge_ad default export (its default variant)",
    "edge_ad_fp32": "  same bundle, FP32 variant",
    "edge_ad_exact_full": "  edge_ad at the images' size, exact search, FP32",
    "anomalib": "anomalib PatchCore (images' size, greedy, exact; OpenVINO f32)",
}


def accuracy_markdown(result: dict) -> str:
    """BENCHMARKS.md tables: AUROC with intervals and the difference to anomalib, then speed."""
    lines = [
        "| category | model | mean AUROC [95 % CI] | − anomalib, points [95 % CI] |",
        "| --- | --- | ---: | ---: |",
    ]
    for c in result["cases"]:
        runs = c["runs"]
        n = len(runs[0]["labels"])
        defects = int(sum(runs[0]["labels"]))
        label = f"{c['case']} (strength {c['strength']}; {n} test images, {defects} defects, × {len(runs)} seeds)"
        for name, title in MODELS.items():
            s = c["summary"][name]
            diff = (
                f"{100 * s['diff']:+.2f} [{100 * s['diff_low']:+.2f}, {100 * s['diff_high']:+.2f}]"
                if "diff" in s
                else ""
            )
            lines.append(f"| {label} | {title} | {s['auroc']:.4f} [{s['low']:.4f}, {s['high']:.4f}] | {diff} |")
            label = ""
    lines += [
        "",
        "| category | edge_ad input px (per seed) | edge_ad variant | edge_ad p50 ms | anomalib p50 ms | speed-up |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for c in result["cases"]:
        sizes = ", ".join(str(r["edge_ad"]["input"]) for r in c["runs"])
        variants = ", ".join(sorted({r["edge_ad"]["variant"] for r in c["runs"]}))
        ratio = c["anomalib_p50_ms"] / c["ours_p50_ms"]
        lines.append(
            f"| {c['case']} | {sizes} | {variants} | {c['ours_p50_ms']:.2f} | {c['anomalib_p50_ms']:.2f} | "
            f"{ratio:.1f}× |"
        )
    return "\n".join(lines) + "\n"
