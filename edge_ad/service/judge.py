"""Result -> Verdict."""

from __future__ import annotations

from edge_ad.types import Frame, Result, Verdict, is_ng

__all__ = ["judge"]


def judge(result: Result, frame: Frame, threshold: float, seq: int, model: dict[str, str]) -> Verdict:
    """NG when the raw score reaches the threshold (:func:`~edge_ad.types.is_ng`), else OK.

    ``model`` names what judged: name, version, variant and precision.
    """
    return Verdict(
        seq=seq,
        ts=frame.ts,
        verdict="NG" if is_ng(result.score, threshold) else "OK",
        score=result.score,
        threshold=threshold,
        model=model,
        latency_ms=result.latency_ms,
        frame_index=frame.index,
        origin=frame.origin,
    )
