"""Torch-free image-level metrics and threshold selection (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "auroc_intervals", "best_f1_threshold", "classification_stats", "spearman"]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), labels 1 = defect."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both good and defect samples")
    ranks = _ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_intervals(
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    reference: str = "fp32",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Bootstrap intervals of each AUROC and of its paired drop against ``reference``.

    Good and defect images are resampled separately (stratified) with the same draws for every
    entry of ``scores``, so the drop interval says whether one variant really ranks worse on
    these images.

    Returns:
        ``{name: {"auroc": (low, high), "drop": (low, high)}}`` (no ``drop`` for the reference).
    """
    labels = np.asarray(labels).astype(bool)
    good, bad = np.flatnonzero(~labels), np.flatnonzero(labels)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in scores}
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(good, len(good)), rng.choice(bad, len(bad))])
        for name, values in scores.items():
            draws[name].append(auroc(labels[idx], np.asarray(values)[idx]))
    tail = 100 * (1 - level) / 2

    def interval(values: np.ndarray) -> tuple[float, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name, values in draws.items():
        out[name] = {"auroc": interval(np.array(values))}
        if name != reference and reference in draws:
            out[name]["drop"] = interval(np.array(draws[reference]) - np.array(values))
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation."""
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


def classification_stats(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and counts when ``score >= threshold`` means NG."""
    labels = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= threshold
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 (ties: the widest margin), placed midway between adjacent scores.

    Returns:
        (threshold, f1)
    """
    scores = np.asarray(scores, dtype=np.float64)
    uniq = np.unique(scores)
    candidates = np.concatenate([(uniq[:-1] + uniq[1:]) / 2, [uniq[-1]]]) if len(uniq) > 1 else uniq
    best = max(
        ((classification_stats(labels, scores, t)["f1"], t) for t in candidates),
        key=lambda ft: (round(ft[0], 12), _margin(scores, ft[1])),
    )
    return float(best[1]), float(best[0])


def _margin(scores: np.ndarray, threshold: float) -> float:
    return float(np.min(np.abs(scores - threshold)))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, from the highest threshold down."""
    labels = np.asarray(labels).astype(bool)
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    pred = np.asarray(scores)[None, :] >= thresholds[:, None]
    tpr = (pred & labels).sum(1) / max(labels.sum(), 1)
    fpr = (pred & ~labels).sum(1) / max((~labels).sum(), 1)
    return fpr, tpr, thresholds


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds (each unique score as a threshold, highest first)."""
    labels = np.asarray(labels).astype(bool)
    thresholds = np.unique(scores)[::-1]
    pred = np.asarray(scores)[None, :] >= thresholds[:, None]
    tp = (pred & labels).sum(1)
    precision = tp / np.maximum(pred.sum(1), 1)
    recall = tp / max(labels.sum(), 1)
    return precision, recall, thresholds


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision × recall increment."""
    precision, recall, _ = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
