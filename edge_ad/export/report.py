"""Evaluation report inside the bundle (``report/``): plots, JSON and an offline ``report.html``.

``edge-ad report BUNDLE`` rebuilds it from ``report/scores.json`` (overlays need the images).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edge_ad.bundle import Bundle, Manifest, load_bundle
from edge_ad.calibrate.metrics import best_f1_threshold, classification_stats, pr_curve, roc_curve
from edge_ad.inference.engine import AnomalyModel
from edge_ad.service.evidence import heatmap_overlay
from edge_ad.types import Frame, is_ng

__all__ = ["build_report", "rebuild_report"]

REPORT_DIR = "report"
COLORS = {"fp32": "tab:blue", "int8": "tab:orange"}


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path.name


def _curves(out: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> list[str]:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for v, s in scores.items():
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(fpr, tpr, label=v.upper(), color=COLORS[v])
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    ax.legend()
    roc = _save(fig, out / "roc.png")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for v, s in scores.items():
        precision, recall, _ = pr_curve(labels, s)
        ax.step(np.r_[0, recall], np.r_[1, precision], where="pre", label=v.upper(), color=COLORS[v])
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)", ylim=(0, 1.05))
    ax.legend()
    return [roc, _save(fig, out / "pr.png")]


def _histogram(out: Path, variant: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(scores.min(), scores.max(), 30)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defect", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="raw anomaly score", ylabel="images", title=f"{variant.upper()} scores (test split)")
    ax.legend()
    return _save(fig, out / f"histogram_{variant}.png")


def _confusion(out: Path, variant: str, stats: dict) -> str:
    matrix = np.array([[stats["tn"], stats["fp"]], [stats["fn"], stats["tp"]]])
    fig, ax = plt.subplots(figsize=(3.5, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["OK", "NG"])
    ax.set_yticks([0, 1], ["good", "defect"])
    ax.set(xlabel="verdict", ylabel="truth", title=f"{variant.upper()} confusion")
    return _save(fig, out / f"confusion_{variant}.png")


def gallery_title(rows: list[dict], threshold: float, variant: str) -> str:
    """What the error gallery shows: false rejects and escapes at the threshold, or, without any, the closest calls."""
    rejects = sum(1 for r in rows if is_ng(r["score"], threshold) and not r["label"])
    escapes = sum(1 for r in rows if not is_ng(r["score"], threshold) and r["label"])
    if rejects or escapes:
        return f"False rejects ({rejects}) and escapes ({escapes}) at {threshold:.4g} ({variant}), worst first"
    return f"No false reject or escape at {threshold:.4g} ({variant}): the closest calls"


def _overlays(out: Path, bundle: Bundle, variant: str, rows: list[dict], threshold: float, limit: int = 4) -> list[str]:
    """Heatmaps of the false rejects and escapes (wrong side of the threshold, largest margin first).

    Without any: the good and the defect image closest to the threshold (the narrowest margins).
    """
    wrong = [r for r in rows if is_ng(r["score"], threshold) != bool(r["label"])]
    if wrong:
        worst = sorted(wrong, key=lambda r: -abs(r["score"] - threshold))[:limit]
    else:
        worst = [
            row
            for label in (0, 1)
            for row in sorted((r for r in rows if r["label"] == label), key=lambda r: abs(r["score"] - threshold))[
                : limit // 2
            ]
        ]
    folder = out / "overlays"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    model = AnomalyModel(bundle, variant=variant, device="CPU")
    names = []
    for i, row in enumerate(worst):
        image = cv2.imread(row["path"], cv2.IMREAD_COLOR)
        if image is None:
            continue
        result = model.infer(Frame(image=image, ts=0.0, index=1))
        overlay = heatmap_overlay(image, result.anomaly_map, threshold)
        label = f"{row['kind']} {row['score']:.3g} {'NG' if is_ng(row['score'], threshold) else 'OK'}"
        cv2.putText(overlay, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        name = f"overlays/{i:02d}_{row['kind']}_{Path(row['path']).stem}.png"
        cv2.imwrite(str(out / name), np.concatenate([image, overlay], axis=1))
        names.append(name)
    return names


def _img(out: Path, name: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'


def _html(out: Path, manifest: Manifest, sections: dict[str, list[str]], tables: dict[str, dict]) -> None:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>edge_ad report {html.escape(manifest.name)} v{manifest.version}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{margin:4px;vertical-align:top}</style>",
        "</head><body>",
        f"<h1>{html.escape(manifest.name)} v{manifest.version} — {manifest.model.type}, {manifest.model.backbone}</h1>",
        f"<p>Created {html.escape(manifest.created)}; input {manifest.input.width}×{manifest.input.height}; "
        f"default variant <b>{manifest.default_variant}</b>.</p>",
    ]
    for title, table in tables.items():
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr><th></th>")
        columns = sorted({k for row in table.values() for k in row})
        parts.append("".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
        for row_name, row in table.items():
            cells = "".join(
                f"<td>{row[c]:.4f}</td>"
                if isinstance(row.get(c), float)
                else f"<td>{html.escape(str(row.get(c, '')))}</td>"
                for c in columns
            )
            parts.append(f"<tr><th>{html.escape(row_name)}</th>{cells}</tr>")
        parts.append("</table>")
    for title, images in sections.items():
        parts.append(f"<h2>{html.escape(title)}</h2>" + "".join(_img(out, n) for n in images))
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts))


def build_report(
    bundle_dir: Path,
    manifest: Manifest,
    splits: dict,
    scores: dict[str, dict[str, np.ndarray]],
    out: Path | None = None,
) -> Path:
    """Write ``bundle_dir/report/`` (or ``out``) from per-variant, per-split scores; returns ``report.html``.

    Args:
        bundle_dir: Bundle (or staging) directory holding the IRs.
        manifest: Its manifest, with thresholds and metrics filled in.
        splits: ``{"validation": Split, "test": Split}`` (paths, labels, kinds).
        scores: ``{variant: {split name: scores}}`` in split order.
        out: Where to write; default the bundle's own ``report/`` (export only: it is signed with the bundle).
    """
    out = out or bundle_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        v: {
            name: [
                {"path": str(p), "label": int(lbl), "kind": k, "score": float(s)}
                for p, lbl, k, s in zip(split.paths, split.labels, split.kinds, scores[v][name], strict=True)
            ]
            for name, split in splits.items()
        }
        for v in scores
    }
    (out / "scores.json").write_text(json.dumps({"variants": rows}, indent=1))
    test = splits["test"]
    bundle = Bundle(path=bundle_dir, manifest=manifest)
    sections: dict[str, list[str]] = {"Curves": _curves(out, test.labels, {v: scores[v]["test"] for v in scores})}
    tables: dict[str, dict] = {"Test split metrics": {}, "Confusion (test split)": {}}
    confusion = {}
    for v, variant in manifest.variants.items():
        threshold = variant.threshold.value
        s = scores[v]["test"]
        stats = classification_stats(test.labels, s, threshold)
        best_t, best_f1 = best_f1_threshold(test.labels, s)
        confusion[v] = {k: stats[k] for k in ("tp", "fp", "fn", "tn")}
        tables["Test split metrics"][f"{v} ({variant.status})"] = {
            **{k: val for k, val in variant.metrics.items() if not k.startswith(("tp", "fp", "fn", "tn"))},
            "threshold": threshold,
            "f1_optimal_threshold": best_t,
            "f1_at_optimal": best_f1,
        }
        tables["Confusion (test split)"][v] = {k: str(val) for k, val in confusion[v].items()}
        sections.setdefault("Score histograms", []).append(_histogram(out, v, test.labels, s, threshold))
        sections.setdefault("Confusion matrices", []).append(_confusion(out, v, stats))
    default = manifest.default_variant
    threshold = manifest.variants[default].threshold.value
    title = gallery_title(rows[default]["test"], threshold, default)
    sections[title] = _overlays(out, bundle, default, rows[default]["test"], threshold)
    (out / "confusion.json").write_text(json.dumps(confusion, indent=1))
    (out / "metrics.json").write_text(
        json.dumps({"variants": tables["Test split metrics"], **manifest.metrics}, indent=1)
    )
    _html(out, manifest, sections, tables)
    return out / "report.html"


def rebuild_report(path: str | Path, out: Path | None = None) -> Path:
    """Rebuild a bundle's report from its stored scores into ``out`` (``edge-ad report``).

    Never into the installed bundle: its report is covered by the manifest (and its signature).
    Default ``out``: ``report-<name>-v<version>`` in the current directory.
    """
    from edge_ad.export.pipeline import Split

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
