"""Matplotlib figures of the export report (workstation only: the station has no matplotlib)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edge_ad.calibrate.metrics import pr_curve, roc_curve

__all__ = ["SigmaMarks", "confusion", "curves", "histogram", "histogram_figure"]

COLORS = {"fp32": "tab:blue", "int8": "tab:orange"}


def _save(fig: plt.Figure, path: Path, bottom: float = 0.0) -> str:
    fig.tight_layout(rect=(0, bottom, 1, 1))  # bottom: room for a note under the axes
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path.name


def curves(out: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> list[str]:
    """ROC and precision-recall curves of every variant; returns the file names written into ``out``."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for v, s in scores.items():
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(fpr, tpr, label=v.upper(), color=COLORS.get(v))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    ax.legend()
    roc = _save(fig, out / "roc.png")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for v, s in scores.items():
        precision, recall, _ = pr_curve(labels, s)
        ax.step(np.r_[0, recall], np.r_[1, precision], where="pre", label=v.upper(), color=COLORS.get(v))
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)", ylim=(0, 1.05))
    ax.legend()
    return [roc, _save(fig, out / "pr.png")]


@dataclass(frozen=True)
class SigmaMarks:
    """A mean + k·sigma threshold's parts, to mark on a histogram (μ, σ of the good validation scores)."""

    mean: float
    std: float
    k: float
    note: str = ""  # shown under the plot (e.g. how many validation images lie above μ + kσ)


def histogram_figure(
    variant: str, labels: np.ndarray, scores: np.ndarray, threshold: float, sigma: SigmaMarks | None = None
) -> plt.Figure:
    """Good and defect score histograms with the threshold (and μ, μ + kσ when it is a sigma threshold)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5 if sigma is None else 4.0))
    marks = [threshold] if sigma is None else [threshold, sigma.mean]
    bins = np.linspace(min(scores.min(), *marks), max(scores.max(), *marks), 30)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defect", color="tab:red")
    name = "threshold" if sigma is None else f"threshold μ + {sigma.k:g}σ"
    ax.axvline(threshold, color="black", linestyle="--", label=f"{name} {threshold:.3g}")
    if sigma is not None:
        ax.axvline(sigma.mean, color="grey", linestyle=":", label=f"μ good (validation) {sigma.mean:.3g}")
        fig.text(0.5, 0.01, sigma.note, ha="center", va="bottom", fontsize=7, wrap=True)
    ax.set(xlabel="raw anomaly score", ylabel="images", title=f"{variant.upper()} scores (test split)")
    ax.legend(fontsize=8 if sigma is not None else None)
    return fig


def histogram(
    out: Path, variant: str, labels: np.ndarray, scores: np.ndarray, threshold: float, sigma: SigmaMarks | None = None
) -> str:
    """Write :func:`histogram_figure`; returns the file name."""
    fig = histogram_figure(variant, labels, scores, threshold, sigma)
    return _save(fig, out / f"histogram_{variant}.png", bottom=0.0 if sigma is None else 0.08)


def confusion(out: Path, variant: str, counts: dict[str, int]) -> str:
    """The 2×2 confusion matrix (``tp``, ``fp``, ``fn``, ``tn``); returns the file name."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, ax = plt.subplots(figsize=(3.5, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["OK", "NG"])
    ax.set_yticks([0, 1], ["good", "defect"])
    ax.set(xlabel="verdict", ylabel="truth", title=f"{variant.upper()} confusion")
    return _save(fig, out / f"confusion_{variant}.png")
