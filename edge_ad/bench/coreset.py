"""Coreset benchmark: edge_ad's k-center greedy (exact, and the batched approximation) vs anomalib's.

:func:`selection_bench` times the selection alone on the same projected features and first centre
and checks that the default picks the same rows as anomalib's ``KCenterGreedy``.
In :func:`run_coreset_bench` each run is a full export without INT8; the coreset time is measured
inside PatchCore's ``fit``.
Accuracy is measured by the runtime on the shipped FP32 IRs, on every test image of the category
(validation and test split together), and the two coresets are compared on the same images: the
AUROC difference with a paired, stratified bootstrap 95 % interval.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_ad.bench.machine import machine
from edge_ad.calibrate.intervals import seed_mean_intervals
from edge_ad.calibrate.metrics import auroc

__all__ = ["paired_auroc_difference", "run_coreset_bench", "selection_bench", "to_markdown"]

# patches of 60 training images with blocks.2 (stride 8, 40-d) at 128 and 256 px
SELECTION_SIZES = ((60 * 16 * 16, 40), (60 * 32 * 32, 40))

ALGORITHMS = ("greedy", "fast", "anomalib")  # edge_ad's exact greedy (default), its approximation, anomalib's


def paired_auroc_difference(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """AUROC(a) − AUROC(b) on the same images, with a 95 % paired, stratified bootstrap interval.

    One seed of :func:`~edge_ad.calibrate.intervals.seed_mean_intervals`: both score vectors are
    evaluated on the same resample, so the interval reflects the difference between the models
    rather than the luck of the test set.
    """
    row = seed_mean_intervals([np.asarray(labels)], {"a": [a], "b": [b]}, reference="b", resamples=resamples, seed=seed)
    return {"diff": row["a"]["diff"], "ci_low": row["a"]["diff_low"], "ci_high": row["a"]["diff_high"]}


def selection_bench(sizes=SELECTION_SIZES, ratio: float = 0.1, seed: int = 0) -> str:
    """Markdown table: anomalib's KCenterGreedy vs ours (greedy, fast) on the same clustered features."""
    import time

    import torch
    from anomalib.models.components.sampling import KCenterGreedy

    from edge_ad.calibrate.coreset import kcenter_greedy

    rng = np.random.default_rng(seed)
    lines = [
        "| patches × dims | rows | anomalib s | greedy s | speed-up | same rows as anomalib | fast s | speed-up "
        "| fast rows differing |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]  # fmt: skip
    for total, dims in sizes:
        centres = rng.normal(size=(200, dims)).astype(np.float32) * 2
        x = (centres[rng.integers(200, size=total)] + rng.normal(size=(total, dims))).astype(np.float32)
        torch.manual_seed(seed)
        start = int(torch.randint(high=total, size=(1,)).squeeze())
        torch.manual_seed(seed)
        started = time.perf_counter()
        theirs = sorted(int(i) for i in KCenterGreedy(torch.from_numpy(x)[:, :, None], ratio).select_coreset_idxs())
        t_anomalib = time.perf_counter() - started
        times, picks = {}, {}
        for name, exact in (("greedy", True), ("fast", False)):
            started = time.perf_counter()
            picks[name] = kcenter_greedy(x, len(theirs), projection_dim=dims, start=start, exact=exact).tolist()
            times[name] = time.perf_counter() - started
        differ = len(set(picks["fast"]) ^ set(theirs)) // 2
        lines.append(
            f"| {total} × {dims} | {len(theirs)} | {t_anomalib:.2f} | {times['greedy']:.2f} | "
            f"{t_anomalib / times['greedy']:.1f}× | {'yes' if picks['greedy'] == theirs else 'NO'} | "
            f"{times['fast']:.2f} | {t_anomalib / times['fast']:.1f}× | {differ} |"
        )
    return "\n".join(lines) + "\n"


def _score_test_images(bundle: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    from edge_ad.bundle.store import load_bundle
    from edge_ad.datasets.layout import find_category, read_images
    from edge_ad.inference.engine import AnomalyModel

    items = find_category(data).test_images()
    model = AnomalyModel(load_bundle(bundle), "fp32")
    scores = model.score_images(read_images([path for path, _, _ in items], "test"))
    return np.array([label for _, label, _ in items]), scores


def run_coreset_bench(categories: list[Path], image_size: int, ratio: float, seed: int = 0) -> dict:
    """Export every category with both coresets; times, AUROC and the paired AUROC difference."""
    from edge_ad.export.pipeline import export_bundle
    from edge_ad.export.recipe import ExportRecipe, Int8Options, ModelOptions

    rows, comparisons = [], []
    for data in categories:
        scores: dict[str, np.ndarray] = {}
        labels = np.empty(0)
        for algo in ALGORITHMS:
            with tempfile.TemporaryDirectory() as out:
                recipe = ExportRecipe(
                    data=data,
                    out=Path(out),
                    seed=seed,
                    model=ModelOptions(image_size=image_size, coreset=algo, coreset_ratio=ratio),
                    int8=Int8Options(mode="none"),
                )
                result = export_bundle(recipe)
                labels, scores[algo] = _score_test_images(result.bundle, data)
            params = result.manifest.model.params
            rows.append(
                {
                    "category": Path(data).name,
                    "coreset": algo,
                    "patches": int(params["memory_bank_rows"] / ratio),
                    "bank_rows": params["memory_bank_rows"],
                    "coreset_s": params["coreset_seconds"],
                    "fit_s": round(result.seconds["fit"], 2),
                    "test_images": int(labels.size),
                    "defects": int(labels.sum()),
                    "auroc": auroc(labels, scores[algo]),
                }
            )
        for algo in ALGORITHMS[:-1]:
            comparisons.append(
                {
                    "category": Path(data).name,
                    "coreset": algo,
                    **paired_auroc_difference(labels, scores[algo], scores["anomalib"]),
                }
            )
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "image_size": image_size,
        "ratio": ratio,
        "rows": rows,
        "minus_anomalib": comparisons,
    }


def to_markdown(result: dict) -> str:
    """Tables of a :func:`run_coreset_bench` result: speed-ups, then the paired AUROC differences."""
    lines = [
        "| category | coreset | patches | bank rows | coreset s | speed-up | test images (defects) | AUROC |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = {r["category"]: r for r in result["rows"] if r["coreset"] == "anomalib"}
    for r in result["rows"]:
        ref = reference.get(r["category"])
        speedup = f"{ref['coreset_s'] / r['coreset_s']:.1f}×" if ref and r["coreset_s"] else ""
        lines.append(
            f"| {r['category']} | {r['coreset']} | {r['patches']} | {r['bank_rows']} | {r['coreset_s']:.2f} | "
            f"{speedup} | {r['test_images']} ({r['defects']}) | {r['auroc']:.4f} |"
        )
    lines += [
        "",
        "| category | coreset | AUROC − anomalib's (points) | 95 % paired bootstrap interval |",
        "| --- | --- | ---: | --- |",
    ]
    for c in result["minus_anomalib"]:
        lines.append(
            f"| {c['category']} | {c['coreset']} | {100 * c['diff']:+.2f} | "
            f"[{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}] |"
        )
    return "\n".join(lines) + "\n\n```json\n" + json.dumps(result, indent=1) + "\n```\n"
