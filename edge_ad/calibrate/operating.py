"""Operating points: what a threshold trades between recall and false rejects (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_ad.calibrate.metrics import best_f1_threshold, classification_stats

__all__ = [
    "FALSE_REJECT_TARGETS",
    "OperatingPoint",
    "operating_point",
    "operating_points",
    "threshold_for_false_reject",
]

FALSE_REJECT_TARGETS = (0.0, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it does on a labelled split (NG when ``score >= threshold``).

    Attributes:
        label: Why this threshold, e.g. ``"chosen"``, ``"false rejects ≤ 1 %"``, ``"best F1"``.
        threshold: Raw score threshold.
        recall: Defect images rejected / defect images.
        false_reject: Good images rejected / good images.
        precision: Defects among the rejected images.
        f1: Harmonic mean of precision and recall.
        caught: Defect images rejected.
        defects: Defect images.
        rejected: Good images rejected.
        good: Good images.
    """

    label: str
    threshold: float
    recall: float
    false_reject: float
    precision: float
    f1: float
    caught: int
    defects: int
    rejected: int
    good: int


def operating_point(label: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingPoint:
    """What ``threshold`` does on ``labels``/``scores``."""
    s = classification_stats(labels, scores, threshold)
    good, defects = int(s["fp"] + s["tn"]), int(s["tp"] + s["fn"])
    return OperatingPoint(
        label=label,
        threshold=float(threshold),
        recall=float(s["recall"]),
        false_reject=s["fp"] / good if good else 0.0,
        precision=float(s["precision"]),
        f1=float(s["f1"]),
        caught=int(s["tp"]),
        defects=defects,
        rejected=int(s["fp"]),
        good=good,
    )


def threshold_for_false_reject(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold (most recall) that rejects at most ``target`` of the good images.

    It sits midway between the highest good score that must pass and the next higher score, like
    :func:`~edge_ad.calibrate.metrics.best_f1_threshold`. With ``n`` good images the rate moves in steps
    of ``1/n``: any target below ``1/n`` gives the zero-false-reject threshold.

    Raises:
        ValueError: ``target`` is outside [0, 1) or there are no good images.
    """
    if not 0 <= target < 1:
        raise ValueError(f"false-reject target must be in [0, 1), got {target}")
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    good = np.sort(scores[~labels])[::-1]
    if not len(good):
        raise ValueError("a false-reject threshold needs good images")
    allowed = math.floor(target * len(good) + 1e-9)  # good images that may be rejected
    passing = good[allowed]  # the highest good score that must stay OK
    above = scores[scores > passing]
    return float((passing + above.min()) / 2) if len(above) else float(np.nextafter(passing, np.inf))


def operating_points(
    labels: np.ndarray,
    scores: np.ndarray,
    chosen: float,
    targets: tuple[float, ...] = FALSE_REJECT_TARGETS,
) -> list[OperatingPoint]:
    """The chosen threshold, the thresholds meeting each false-reject target, and the best-F1 one.

    Thresholds other than ``chosen`` are fitted on the same images they are measured on, so they
    are optimistic there: they show the trade-off, not what the line will see.
    """
    points = [operating_point("chosen", labels, scores, chosen)]
    for target in targets:
        threshold = threshold_for_false_reject(labels, scores, target)
        points.append(operating_point(f"false rejects ≤ {100 * target:g} %", labels, scores, threshold))
    best, _ = best_f1_threshold(labels, scores)
    points.append(operating_point("best F1", labels, scores, best))
    return points
