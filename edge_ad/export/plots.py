"""Matplotlib figures of the export report (workstation only: the station has no matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edge_ad.calibrate.metrics import pr_curve, roc_curve

__all__ = ["confusion", "curves", "histogram"]

COLORS = {"fp32": "tab:blue", "int8": "tab:orange"}


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
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


def histogram(out: Path, variant: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    """Good and defect score histograms with the threshold; returns the file name."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(min(scores.min(), threshold), max(scores.max(), threshold), 30)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defect", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="raw anomaly score", ylabel="images", title=f"{variant.upper()} scores (test split)")
    ax.legend()
    return _save(fig, out / f"histogram_{variant}.png")


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
