"""Rolling station statistics for the retained ``stats`` message."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from edge_ad.types import round_score

__all__ = ["StationStats"]


class StationStats:
    """Counts and a window of recent latencies; :meth:`snapshot` builds the payload fields.

    Args:
        window: Number of recent frames the latency percentiles and the NG rate cover.
    """

    def __init__(self, window: int = 1000) -> None:
        self.started = time.monotonic()
        self.frames = 0
        self.ng = 0
        self._latency: deque[float] = deque(maxlen=window)
        self._verdicts: deque[bool] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)

    def add(self, latency_ms: float, is_ng: bool) -> None:
        """Record one scored frame."""
        self.frames += 1
        self.ng += int(is_ng)
        self._latency.append(latency_ms)
        self._verdicts.append(is_ng)
        self._times.append(time.monotonic())

    def snapshot(self) -> dict:
        """Fps (over the window), latency p50/p99 (ms), NG rate (window), totals and uptime."""
        fps = 0.0
        if len(self._times) >= 2 and self._times[-1] > self._times[0]:
            fps = (len(self._times) - 1) / (self._times[-1] - self._times[0])
        lat = np.array(self._latency) if self._latency else np.zeros(1)
        return {
            "frames": self.frames,
            "ng": self.ng,
            "fps": round(fps, 2),
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p99": round(float(np.percentile(lat, 99)), 2),
            },
            "ng_rate": round(sum(self._verdicts) / len(self._verdicts), 4) if self._verdicts else 0.0,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }


class DriftMonitor:
    """Alarm when the rolling median of OK scores climbs past ``fraction`` of the threshold.

    Lighting changes, dirt on the lens or a new material move good parts' scores towards the
    threshold long before they are rejected; this makes that visible on the status topic.
    """

    def __init__(self, window: int, fraction: float) -> None:
        self.window = window
        self.fraction = fraction
        self.alarm = False
        self.median = 0.0
        self._ok: deque[float] = deque(maxlen=window)

    def update(self, score: float, is_ok: bool, threshold: float) -> bool:
        """Add a score; return True when the alarm state changed."""
        if not is_ok:
            return False
        self._ok.append(score)
        if len(self._ok) < self.window:
            return False
        self.median = float(np.median(self._ok))
        alarm = self.median > self.fraction * threshold
        changed, self.alarm = alarm != self.alarm, alarm
        return changed

    def status(self, threshold: float) -> dict:
        """The ``drift`` field of the status message."""
        return {
            "alarm": self.alarm,
            "median_ok_score": round_score(self.median),
            "limit": round_score(self.fraction * threshold),
        }
