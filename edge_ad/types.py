"""Data passed between stages: Frame -> Result -> Verdict (stdlib + numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

__all__ = ["CameraStamp", "Frame", "Result", "Verdict", "is_ng", "score_norm"]


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    Attributes:
        image: uint8 BGR array of shape (H, W, 3), as OpenCV delivers it.
        ts: Wall-clock capture time (seconds since the epoch).
        index: Running frame number of the source since it was opened.
        origin: Where the frame came from (file name, device, URL); for logs and evidence.
        camera: The camera's own frame id and timestamp (GenICam cameras), carried into the verdict.
        trigger: The software trigger that made the camera take this frame (bound by the source), if any.
    """

    image: np.ndarray
    ts: float
    index: int
    origin: str = ""
    camera: CameraStamp | None = None
    trigger: object | None = None


@dataclass(frozen=True)
class CameraStamp:
    """What an industrial camera says about a frame: its frame (block) id and its own clock in nanoseconds."""

    frame_id: int
    timestamp_ns: int


@dataclass(frozen=True)
class Result:
    """Raw model output for one frame; no threshold has been applied.

    Attributes:
        score: Raw image anomaly score in the bundle's ``score_space``.
        anomaly_map: Patch-grid anomaly map (h, w) in the same space, or None.
        latency_ms: Time spent in preprocessing and inference.
        embedding: What the most anomalous region looks like (a feature vector), when the model
            provides one (PatchCore bundles); used for similar-case search.
    """

    score: float
    anomaly_map: np.ndarray | None
    latency_ms: float
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class Verdict:
    """The decision published for one frame."""

    seq: int
    ts: float
    verdict: Literal["OK", "NG"]
    score: float
    threshold: float
    model: dict[str, str]  # name, version, variant, precision
    latency_ms: float
    frame_index: int
    origin: str = ""
    extra: dict = field(default_factory=dict)


Score = TypeVar("Score", float, np.ndarray)


def is_ng(score: Score, threshold: float) -> Score:
    """The NG rule, for one score or an array of them: NG when the raw score reaches the threshold."""
    return score >= threshold


def score_norm(score: float, threshold: float) -> float:
    """The score on a 0..1 scale with the threshold at 0.5: ``0.5 * score / threshold`` clipped to [0, 1].

    NG exactly when the result is >= 0.5, like :func:`is_ng`. Raw scores have no upper bound and a
    different range per model; this one is comparable across models and stations (e.g. on a SCADA
    gauge). A threshold <= 0 gives no such scale: 1.0 for NG, 0.0 for OK.
    """
    if threshold <= 0:
        return 1.0 if score >= threshold else 0.0
    return min(1.0, max(0.0, 0.5 * score / threshold))


SCORE_DECIMALS = 6
STEP = 10.0**-SCORE_DECIMALS


def round_score(value: float) -> float:
    """The one rounding rule for scores, thresholds and ``score_norm`` on every topic: 6 decimal places."""
    return round(float(value), SCORE_DECIMALS)


def round_latency(ms: float) -> float:
    """Latencies on every interface: 2 decimal places of a millisecond."""
    return round(float(ms), 2)


def published_scores(score: float, threshold: float) -> tuple[float, float, float]:
    """(score, score_norm, threshold) as every interface shows them: rounded, and still telling the verdict.

    Rounding alone could turn an OK score a hair below the threshold into one equal to it (and a
    ``score_norm`` of 0.4999996 into 0.5): a consumer that re-applies ``score >= threshold`` or
    ``score_norm >= 0.5`` would read NG. Such an OK score is shown one step (1e-6) below the rounded
    threshold, and its ``score_norm`` one step below 0.5; NG values never need it (rounding keeps ``>=``).
    """
    ng = bool(is_ng(score, threshold))
    shown, norm, limit = round_score(score), round_score(score_norm(score, threshold)), round_score(threshold)
    if not ng:
        shown = min(shown, round_score(limit - STEP))
        norm = min(norm, round_score(0.5 - STEP))
    return shown, norm, limit
