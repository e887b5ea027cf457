"""Coreset benchmark: edge_ad's fast k-center vs anomalib's greedy, same data, ratio and seed.

Each run is a full export without INT8 (so the AUROC is measured by the runtime on the shipped
FP32 IR); the coreset time is measured inside PatchCore's ``fit``.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from edge_ad.bench.machine import machine

__all__ = ["run_coreset_bench"]


def run_coreset_bench(categories: list[Path], image_size: int, ratio: float, seed: int = 0) -> dict:
    """Export every category twice (fast and greedy coreset) and collect times and accuracy."""
    from edge_ad.export.pipeline import export_bundle
    from edge_ad.export.recipe import ExportRecipe, Int8Options, ModelOptions

    rows = []
    for data in categories:
        for algo in ("fast", "greedy"):
            with tempfile.TemporaryDirectory() as out:
                recipe = ExportRecipe(
                    data=data,
                    out=Path(out),
                    seed=seed,
                    model=ModelOptions(image_size=image_size, coreset=algo, coreset_ratio=ratio),
                    int8=Int8Options(mode="none"),
                )
                result = export_bundle(recipe)
            m = result.manifest
            metrics = m.variants["fp32"].metrics
            rows.append(
                {
                    "category": Path(data).name,
                    "coreset": algo,
                    "patches": int(m.model.params["memory_bank_rows"] / ratio),
                    "bank_rows": m.model.params["memory_bank_rows"],
                    "coreset_s": m.model.params["coreset_seconds"],
                    "fit_s": round(result.seconds["fit"], 2),
                    "auroc_test": metrics["image_auroc"],
                    "auroc_validation": metrics["validation_auroc"],
                }
            )
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "image_size": image_size,
        "ratio": ratio,
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    """Table of a :func:`run_coreset_bench` result, with speed-ups."""
    lines = [
        "| category | coreset | patches | bank rows | coreset s | speed-up | AUROC test | AUROC val |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    greedy = {r["category"]: r for r in result["rows"] if r["coreset"] == "greedy"}
    for r in result["rows"]:
        ref = greedy.get(r["category"])
        speedup = f"{ref['coreset_s'] / r['coreset_s']:.1f}×" if ref and r["coreset_s"] else ""
        lines.append(
            f"| {r['category']} | {r['coreset']} | {r['patches']} | {r['bank_rows']} | {r['coreset_s']:.2f} | "
            f"{speedup} | {r['auroc_test']:.4f} | {r['auroc_validation']:.4f} |"
        )
    return "\n".join(lines) + "\n\n```json\n" + json.dumps(result, indent=1) + "\n```\n"
