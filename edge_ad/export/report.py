"""Evaluation report inside the bundle (``report/``): plots, JSON and an offline ``report.html``.

``edge-ad report BUNDLE`` rebuilds it from ``report/scores.json`` (overlays and pixel metrics need the
images, read again from where the export found them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_ad.bundle import Bundle, Manifest, Threshold, load_bundle
from edge_ad.calibrate.intervals import RESAMPLES, Interval, image_intervals
from edge_ad.calibrate.metrics import auroc, classification_stats, pr_auc
from edge_ad.calibrate.operating import OperatingPoint, operating_points
from edge_ad.calibrate.pixel import AUPRO_FPR_LIMIT
from edge_ad.export import plots
from edge_ad.export.gallery import galleries
from edge_ad.export.localization import PixelResult, anomaly_maps, ground_truth, pixel_result
from edge_ad.export.split import Split
from edge_ad.report import data_uri, render_html
from edge_ad.types import is_ng

__all__ = ["REPORT_DIR", "SigmaCheck", "build_report", "rebuild_report", "sigma_check"]

REPORT_DIR = "report"
BOOTSTRAP = {"resamples": RESAMPLES, "level": 0.95, "seed": 0}
USES = {"validation": "choosing the threshold and the INT8 gate", "test": "every number and image below"}


@dataclass
class VariantSection:
    """What the report shows of one variant on the test split."""

    name: str
    status: str
    default: bool
    threshold: Threshold
    metrics: dict[str, float]  # computed here from the scores, at ``threshold``
    intervals: dict[str, Interval]
    operating: list[OperatingPoint]
    counts: dict[str, int]
    pixel: PixelResult | None = None
    histogram: str = ""
    confusion: str = ""
    sigma: SigmaCheck | None = None


@dataclass(frozen=True)
class SigmaCheck:
    """A mean + k·sigma threshold: its parts and how many validation images score at or above it."""

    mean: float  # of the good validation scores
    std: float
    k: float
    value: float  # the threshold, mean + k * std
    good_above: int
    good: int
    defect_above: int
    defect: int

    @property
    def text(self) -> str:
        """One sentence for the report."""
        return (
            f"Threshold μ + {self.k:g}σ of the good validation scores: {self.mean:.4g} + {self.k:g} × {self.std:.4g}"
            f" = {self.value:.4g}. At or above it (NG): {self.good_above} of {self.good} good and"
            f" {self.defect_above} of {self.defect} defect validation images."
        )

    def marks(self) -> plots.SigmaMarks:
        """What the histogram marks."""
        return plots.SigmaMarks(self.mean, self.std, self.k, self.text)


def sigma_check(threshold: Threshold, validation: Split | None, scores: np.ndarray | None) -> SigmaCheck | None:
    """The sigma threshold's parts and validation counts; None for another method or without its record."""
    inputs = threshold.inputs
    if threshold.method != "sigma" or validation is None or scores is None or not {"mean", "std", "k"} <= set(inputs):
        return None
    ng = is_ng(np.asarray(scores), threshold.value)
    good = validation.labels == 0
    return SigmaCheck(
        mean=float(inputs["mean"]),
        std=float(inputs["std"]),
        k=float(inputs["k"]),
        value=threshold.value,
        good_above=int(ng[good].sum()),
        good=int(good.sum()),
        defect_above=int(ng[~good].sum()),
        defect=int((~good).sum()),
    )


def _rows(splits: dict[str, Split], scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list[dict]]]:
    """``scores.json``: per variant and split, one row per image (path, label, kind, score)."""
    return {
        v: {
            name: [
                {"path": str(p), "label": int(lbl), "kind": k, "score": float(s)}
                for p, lbl, k, s in zip(split.paths, split.labels, split.kinds, scores[v][name], strict=True)
            ]
            for name, split in splits.items()
        }
        for v in scores
    }


def _samples(splits: dict[str, Split]) -> list[dict]:
    out = []
    for name, split in splits.items():
        kinds = [k for k, label in zip(split.kinds, split.labels, strict=True) if label]
        out.append(
            {
                "split": name,
                "good": int((split.labels == 0).sum()),
                "defect": int((split.labels == 1).sum()),
                "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
                "use": USES.get(name, ""),
            }
        )
    return out


def _image_metrics(splits: dict[str, Split], scores: dict[str, np.ndarray], chosen: OperatingPoint) -> dict[str, float]:
    """Precision, F1, PR AUC, recall per defect kind (test split) and the validation AUROC, at ``chosen``."""
    test, s = splits["test"], scores["test"]
    out = {"precision": chosen.precision, "f1": chosen.f1, "pr_auc": pr_auc(test.labels, s)}
    val = splits.get("validation")
    if val is not None and 0 < val.labels.sum() < len(val.labels):
        out["validation_auroc"] = auroc(val.labels, scores["validation"])
    kinds = np.array(test.kinds)
    for kind in sorted(set(test.kinds) - {"good"}):
        out[f"recall_{kind}"] = float(np.mean(is_ng(s[kinds == kind], chosen.threshold)))
    return out


def _images(split: Split) -> list[np.ndarray | None]:
    """The split's images: those the export read, else read again (None where not readable here)."""
    if split.images:
        return list(split.images)
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) if Path(p).is_file() else None for p in split.paths]


def _measurable(bundle: Bundle) -> Bundle:
    """The bundle with every variant runnable: the report shows what a variant the INT8 gate rejected would do."""
    variants = {name: v.model_copy(update={"status": "ok"}) for name, v in bundle.manifest.variants.items()}
    return Bundle(path=bundle.path, manifest=bundle.manifest.model_copy(update={"variants": variants}))


def build_report(
    bundle_dir: Path,
    manifest: Manifest,
    splits: dict[str, Split],
    scores: dict[str, dict[str, np.ndarray]],
    out: Path | None = None,
) -> Path:
    """Write ``bundle_dir/report/`` (or ``out``) from per-variant, per-split scores; returns ``report.html``.

    Args:
        bundle_dir: Bundle (or staging) directory holding the IRs.
        manifest: Its manifest, with thresholds and metrics filled in.
        splits: ``{"validation": Split, "test": Split}`` (paths, labels, kinds; images if at hand).
        scores: ``{variant: {split name: scores}}`` in split order.
        out: Where to write; default the bundle's own ``report/`` (export only: it is signed with the bundle).
    """
    out = out or bundle_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(splits, scores)
    (out / "scores.json").write_text(json.dumps({"variants": rows}, indent=1))
    test = splits["test"]
    bundle = _measurable(Bundle(path=bundle_dir, manifest=manifest))
    images = _images(test)
    truth = ground_truth(test.paths, test.labels, images, manifest.input.roi)
    maps = {v: anomaly_maps(bundle, v, images) for v in scores}
    sections = []
    for v, variant in manifest.variants.items():
        s = scores[v]["test"]
        threshold = variant.threshold.value
        stats = classification_stats(test.labels, s, threshold)
        counts = {k: int(stats[k]) for k in ("tp", "fp", "fn", "tn")}
        operating = operating_points(test.labels, s, threshold)
        sigma = sigma_check(variant.threshold, splits.get("validation"), scores[v].get("validation"))
        section = VariantSection(
            name=v,
            status=variant.status,
            default=v == manifest.default_variant,
            threshold=variant.threshold,
            metrics=_image_metrics(splits, scores[v], operating[0]),
            intervals=image_intervals(test.labels, s, threshold, **BOOTSTRAP),
            operating=operating,
            counts=counts,
            pixel=pixel_result(maps[v], truth),
            histogram=plots.histogram(out, v, test.labels, s, threshold, sigma and sigma.marks()),
            confusion=plots.confusion(out, v, counts),
            sigma=sigma,
        )
        sections.append(section)
    default = manifest.default_variant
    threshold = manifest.variants[default].threshold.value
    shown = galleries(out, rows[default]["test"], images, maps[default], threshold, default, manifest.input.roi)
    (out / "confusion.json").write_text(json.dumps({s.name: s.counts for s in sections}, indent=1))
    (out / "metrics.json").write_text(json.dumps(_metrics_json(sections, splits, manifest, truth.note), indent=1))
    return render_html(
        "export.html.j2",
        out / "report.html",
        manifest=manifest,
        samples=_samples(splits),
        variants=sections,
        kinds=sorted({k for k in test.kinds if k != "good"}),
        bootstrap=BOOTSTRAP,
        any_pixel=any(s.pixel for s in sections),
        pixel_note=truth.note,
        fpr_limit=AUPRO_FPR_LIMIT,
        int8=manifest.metrics.get("int8"),
        latency=manifest.metrics.get("latency_ms"),
        input_size=manifest.metrics.get("input_size"),
        model_choice=manifest.metrics.get("model_choice"),
        curves=plots.curves(out, test.labels, {v: scores[v]["test"] for v in scores}),
        galleries=shown,
        embed=lambda name: data_uri(out / name),
    )


def _metrics_json(sections: list[VariantSection], splits: dict[str, Split], manifest: Manifest, note: str) -> dict:
    """``metrics.json``: the report's numbers for tools (the manifest's metrics included)."""
    variants = {}
    for s in sections:
        exported = manifest.variants[s.name].metrics
        variants[f"{s.name} ({s.status})"] = {
            **{k: val for k, val in exported.items() if k not in ("tp", "fp", "fn", "tn")},
            **s.metrics,
            "threshold": s.threshold.value,
            "f1_optimal_threshold": s.operating[-1].threshold,  # the last operating point: best F1 on the test split
            "f1_at_optimal": s.operating[-1].f1,
        }
    return {
        "variants": variants,
        "samples": _samples(splits),
        "intervals": {s.name: {k: asdict(i) for k, i in s.intervals.items()} for s in sections},
        "bootstrap": BOOTSTRAP,
        "operating_points": {s.name: [asdict(p) for p in s.operating] for s in sections},
        "pixel": {s.name: asdict(s.pixel) if s.pixel else None for s in sections},
        "pixel_note": note,
        "sigma_threshold": {s.name: {**asdict(s.sigma), "text": s.sigma.text} for s in sections if s.sigma},
        **manifest.metrics,
    }


def rebuild_report(path: str | Path, out: Path | None = None) -> Path:
    """Rebuild a bundle's report from its stored scores into ``out`` (``edge-ad report``).

    Never into the installed bundle: its report is covered by the manifest (and its signature).
    Default ``out``: ``report-<name>-v<version>`` in the current directory.
    """
    bundle = load_bundle(path)
    stored = json.loads((bundle.path / REPORT_DIR / "scores.json").read_text())["variants"]
    any_variant = next(iter(stored.values()))
    splits = {
        name: Split(
            name,
            [Path(r["path"]) for r in rows],
            np.array([r["label"] for r in rows]),
            [r["kind"] for r in rows],
        )
        for name, rows in any_variant.items()
    }
    scores = {
        v: {name: np.array([r["score"] for r in rows]) for name, rows in by_split.items()}
        for v, by_split in stored.items()
    }
    m = bundle.manifest
    return build_report(bundle.path, m, splits, scores, out or Path.cwd() / f"report-{m.name}-v{m.version}")
