"""Result -> Verdict."""

from __future__ import annotations

from edge_ad.types import Frame, Result, Verdict

__all__ = ["judge"]


def judge(result: Result, frame: Frame, threshold: float, seq: int, model_name: str, model_version: str) -> Verdict:
    """NG when the raw score reaches the threshold (``score >= threshold``), else OK."""
    return Verdict(
        seq=seq,
        ts=frame.ts,
        verdict="NG" if result.score >= threshold else "OK",
        score=result.score,
        threshold=threshold,
        model_name=model_name,
        model_version=model_version,
        latency_ms=result.latency_ms,
        frame_index=frame.index,
        origin=frame.origin,
    )
