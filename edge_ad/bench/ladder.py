"""The ladder: every model family on the same data, at the same input size, in one run (export extra).

For each category (synthetic at a defect strength where PatchCore is not saturated, or a directory)
every family is exported the normal way — FP32 + INT8 behind its gate, threshold on the validation
split — at one input size, and measured on the held-out test split of
:func:`~edge_ad.export.pipeline.split_test`, which no export decision saw:

- image AUROC of the FP32 variant with a 95 % stratified-bootstrap interval, and its paired
  difference to PatchCore (same draws for every family);
- pixel AUROC where the data has masks (the report's computation);
- FP32 and INT8 median single-frame latency through the runtime (the export's scoring loop: all
  families in the same run, on the same machine), and the INT8 gate's outcome;
- fit time and bundle size.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_ad.bench.accuracy import Case, case_data
from edge_ad.bench.machine import machine
from edge_ad.bundle.manifest import MODEL_TYPES
from edge_ad.calibrate.intervals import seed_mean_intervals
from edge_ad.errors import EdgeAdError

__all__ = ["LadderSettings", "ladder_bench", "ladder_markdown"]

logger = logging.getLogger(__name__)
REFERENCE = "patchcore"


@dataclass(frozen=True)
class LadderSettings:
    """What every family shares: input size, training epochs (for the families that train), seed and data."""

    image_size: int = 128
    epochs: int = 10
    seed: int = 0
    train: int = 40
    test_good: int = 100
    test_defect: int = 34  # per defect kind (3 kinds): about as many defects as good images


def _pixel_auroc(bundle: Path, variant: str) -> float | None:
    """The test split's pixel AUROC the export's report measured (None without masks)."""
    from edge_ad.export.report import REPORT_DIR

    pixel = json.loads((bundle / REPORT_DIR / "metrics.json").read_text())["pixel"].get(variant)
    return None if pixel is None else pixel["pixel_auroc"]


def _one(kind: str, data: Path, settings: LadderSettings, out: Path) -> dict:
    """Export one family on ``data``; its test scores and the figures of the table."""
    from edge_ad.export.pipeline import export_bundle
    from edge_ad.export.recipe import ExportRecipe, ModelOptions

    options = ModelOptions(type=kind, image_size=settings.image_size, epochs=settings.epochs)
    result = export_bundle(ExportRecipe(data=data, out=out, name=kind, model=options, seed=settings.seed))
    m = result.manifest
    latency = m.metrics["latency_ms"]
    return {
        "type": kind,
        "scores": result.scores["fp32"].tolist(),
        "pixel_auroc": _pixel_auroc(result.bundle, "fp32"),
        "fp32_p50_ms": latency["fp32"]["p50"],
        "int8_p50_ms": latency["int8"]["p50"] if "int8" in latency else None,
        "int8_gate": (m.metrics.get("int8") or {}).get("gate", "none"),
        "int8_auroc": m.variants["int8"].metrics["image_auroc"] if "int8" in m.variants else None,
        "fit_s": round(result.seconds["fit"], 1),
        "bundle_mb": round(sum(f.size for f in m.files.values()) / 1e6, 2),
        "threshold_method": m.variants["fp32"].threshold.method,
    }


def ladder_bench(cases: list[Case], kinds: list[str], settings: LadderSettings) -> dict:
    """Every family on every case; per case the AUROCs with intervals and the difference to PatchCore."""
    from edge_ad.datasets.layout import find_category
    from edge_ad.export.pipeline import split_test

    unknown = [k for k in kinds if k not in MODEL_TYPES]
    if unknown:
        raise EdgeAdError(f"bench ladder: unknown model {', '.join(unknown)}; choose from {', '.join(MODEL_TYPES)}")
    spec = {"train": settings.train, "test_good": settings.test_good, "test_defect": settings.test_defect}
    results = []
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="edge-ad-ladder-") as tmp:
            data = case_data(case, settings.seed, Path(tmp) / "data", spec)
            _, test = split_test(find_category(data))
            rows = []
            for kind in kinds:
                logger.info("ladder: %s on %s", kind, case.name)
                rows.append(_one(kind, data, settings, Path(tmp) / "models"))
        scores = {r["type"]: [np.array(r["scores"])] for r in rows}
        reference = REFERENCE if REFERENCE in scores else rows[0]["type"]
        summary = seed_mean_intervals([test.labels], scores, reference=reference)
        results.append(
            {
                "case": case.name,
                "strength": case.strength,
                "images": {"test": len(test.labels), "defects": int(test.labels.sum())},
                "reference": reference,
                "rows": [{**r, **summary[r["type"]]} for r in rows],
            }
        )
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": settings.__dict__,
        "cases": results,
    }


def _points(row: dict) -> str:
    if "diff" not in row:
        return "(reference)"
    return f"{100 * row['diff']:+.1f} [{100 * row['diff_low']:+.1f}, {100 * row['diff_high']:+.1f}]"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def ladder_markdown(result: dict) -> str:
    """BENCHMARKS.md: one table per category, a row per family."""
    s = result["settings"]
    out = []
    for c in result["cases"]:
        images = c["images"]
        out += [
            f"**{c['case']}** (strength {c['strength']}; {images['test']} test images, {images['defects']} defects; "
            f"{s['image_size']} px, seed {s['seed']})",
            "",
            f"| model | image AUROC [95 % CI] | − {c['reference']}, points [95 % CI] | pixel AUROC | FP32 p50 ms | "
            "INT8 p50 ms | INT8 gate | fit s | bundle MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for r in c["rows"]:
            pixel = "—" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.3f}"
            out.append(
                f"| {r['type']} | {r['auroc']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {_points(r)} | {pixel} | "
                f"{_ms(r['fp32_p50_ms'])} | {_ms(r['int8_p50_ms'])} | {r['int8_gate']} | {r['fit_s']:.1f} | "
                f"{r['bundle_mb']:.1f} |"
            )
        out.append("")
    return "\n".join(out)
