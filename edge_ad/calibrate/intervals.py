"""Bootstrap intervals of image-level results: AUROC, recall and false-reject rate (numpy only).

Good and defect images are resampled separately (stratified), so every resample keeps the
split's class counts, and the seed is fixed, so a report rebuilt from the same scores shows the
same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ad.calibrate.metrics import auroc
from edge_ad.types import is_ng

__all__ = ["RESAMPLES", "Interval", "exact_bound", "image_intervals", "seed_mean_intervals"]

RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A result on the images as they are, with its bootstrap percentile interval.

    Attributes:
        estimate: The metric on the split itself.
        low: Lower end of the interval.
        high: Upper end of the interval.
        events: For a rate: how many images it counts (e.g. false rejects), else None.
        images: For a rate: out of how many images, else None.
        exact: For a rate of 0 or 1, whose bootstrap interval collapses onto the estimate: the exact
            (Clopper-Pearson) bound on the open side at the same level; else None.
    """

    estimate: float
    low: float
    high: float
    events: int | None = None
    images: int | None = None
    exact: float | None = None


def exact_bound(events: int, images: int, level: float = 0.95) -> float | None:
    """Clopper-Pearson bound of a rate observed as 0 (upper bound) or 1 (lower bound); None in between.

    Example:
        >>> round(exact_bound(0, 40), 4)  # no false reject among 40 good images: up to 8.8 %
        0.0881
    """
    tail = (1 - level) / 2
    if events == 0:
        return float(1 - tail ** (1 / images))
    if events == images:
        return float(tail ** (1 / images))
    return None


def image_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Image AUROC, recall and false-reject rate at ``threshold``, each with a stratified bootstrap interval.

    The resamples draw the same way as :func:`edge_ad.calibrate.metrics.auroc_intervals` (good, then
    defect indices, with replacement), so the AUROC interval is the same for the same seed.

    Args:
        labels: 1 = defect, 0 = good.
        scores: Raw scores, higher = more anomalous.
        threshold: NG when ``score >= threshold``.
        resamples: Bootstrap resamples.
        level: Two-sided coverage, e.g. 0.95.
        seed: Seed of the resampling.

    Returns:
        ``{"image_auroc": ..., "recall": ..., "false_reject": ...}``.

    Raises:
        ValueError: The split lacks good or defect images.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    good, bad = scores[~labels], scores[labels]
    if not len(good) or not len(bad):
        raise ValueError("intervals need both good and defect samples")
    # wins[i, j]: defect j outranks good i (ties count half), as in the Mann-Whitney AUROC
    wins = (bad[None, :] > good[:, None]) + 0.5 * (bad[None, :] == good[:, None])
    rejected, caught = is_ng(good, threshold).astype(np.float64), is_ng(bad, threshold).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, 3))
    for r in range(resamples):
        gi = rng.integers(0, len(good), len(good))
        bi = rng.integers(0, len(bad), len(bad))
        g_counts = np.bincount(gi, minlength=len(good))
        b_counts = np.bincount(bi, minlength=len(bad))
        draws[r] = (g_counts @ wins @ b_counts / (len(good) * len(bad)), caught[bi].mean(), rejected[gi].mean())
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(draws, [tail, 100 - tail], axis=0)
    out = {"image_auroc": Interval(float(wins.mean()), float(lows[0]), float(highs[0]))}
    for col, (name, hits) in enumerate((("recall", caught), ("false_reject", rejected)), start=1):
        events = int(hits.sum())
        out[name] = Interval(
            float(hits.mean()),
            float(lows[col]),
            float(highs[col]),
            events=events,
            images=len(hits),
            exact=exact_bound(events, len(hits), level),
        )
    return out


def seed_mean_intervals(
    labels: list[np.ndarray], scores: dict[str, list[np.ndarray]], reference: str, resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Mean AUROC over seeds per model, and its difference to ``reference``, with 95 % bootstrap intervals.

    Each resample draws good and defect images with replacement inside every seed's test set (class
    sizes fixed) and evaluates every model on the same draw; the statistic is the mean over seeds.
    """
    rng = np.random.default_rng(seed)
    names = list(scores)
    draws = {name: np.empty(resamples) for name in names}
    for r in range(resamples):
        per_seed = {name: [] for name in names}
        for i, y in enumerate(labels):
            good, bad = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
            idx = np.concatenate([rng.choice(good, good.size), rng.choice(bad, bad.size)])
            for name in names:
                per_seed[name].append(auroc(y[idx], scores[name][i][idx]))
        for name in names:
            draws[name][r] = np.mean(per_seed[name])
    points = {name: float(np.mean([auroc(y, s) for y, s in zip(labels, scores[name], strict=True)])) for name in names}
    out = {}
    for name in names:
        low, high = np.percentile(draws[name], [2.5, 97.5])
        row = {"auroc": points[name], "low": float(low), "high": float(high)}
        if name != reference:
            d_low, d_high = np.percentile(draws[name] - draws[reference], [2.5, 97.5])
            row.update(diff=points[name] - points[reference], diff_low=float(d_low), diff_high=float(d_high))
        out[name] = row
    return out
