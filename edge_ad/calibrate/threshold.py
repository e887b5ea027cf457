"""Threshold selection on raw scores by a named method (numpy only; used by export and on device)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge_ad.bundle.manifest import Threshold
from edge_ad.calibrate.metrics import best_f1_threshold

__all__ = ["ThresholdMethod", "choose_threshold"]

ThresholdMethod = Literal["f1", "sigma", "percentile"]


def choose_threshold(
    method: ThresholdMethod,
    good_scores: np.ndarray,
    defect_scores: np.ndarray | None = None,
    k: float = 3.0,
    percentile: float = 99.5,
    split: str = "validation",
) -> Threshold:
    """Pick the decision threshold and record how.

    Args:
        method: ``f1`` maximises F1 on labelled good + defect scores; ``sigma`` is mean + k·std of good
            scores; ``percentile`` is that percentile of good scores.
        good_scores: Raw scores of good images.
        defect_scores: Raw scores of defect images (required for ``f1``).
        k: Multiplier for ``sigma``.
        percentile: Percentile (0-100) for ``percentile``.
        split: Name of the data the scores come from (recorded).

    Raises:
        ValueError: Too few scores, or ``f1`` without defect scores.
    """
    good = np.asarray(good_scores, dtype=np.float64)
    if good.size < 2:
        raise ValueError(f"threshold needs at least 2 good scores, got {good.size}")
    inputs: dict[str, object] = {"split": split, "good": int(good.size)}
    if method == "f1":
        if defect_scores is None or len(defect_scores) == 0:
            raise ValueError("threshold method 'f1' needs defect images; use 'sigma' or 'percentile' without them")
        bad = np.asarray(defect_scores, dtype=np.float64)
        labels = np.r_[np.zeros(good.size), np.ones(bad.size)]
        value, f1 = best_f1_threshold(labels, np.r_[good, bad])
        inputs.update(defect=int(bad.size), f1=round(f1, 6))
    elif method == "sigma":
        mean, std = float(good.mean()), float(good.std(ddof=1))
        value = mean + k * std
        inputs.update(k=k, mean=mean, std=std)
    elif method == "percentile":
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        value = float(np.percentile(good, percentile))
        inputs.update(percentile=percentile)
    else:
        raise ValueError(f"unknown threshold method {method!r}; use f1, sigma or percentile")
    return Threshold(value=float(value), method=method, inputs=inputs)
