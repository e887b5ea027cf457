"""Bin counts of score series for the SVG histograms the templates draw (no matplotlib on the station)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Histogram", "Line", "Series", "histogram"]

SERIES_COLORS = ("#5cb85c", "#1f6f8b", "#d9534f", "#8e44ad")
LINE_STYLES = (("#777777", "6 3"), ("#000000", ""))  # (colour, SVG dash pattern): old dashed grey, new solid black


@dataclass(frozen=True)
class Series:
    """One score series: its bin counts and how many scores it holds."""

    name: str
    counts: list[int]
    total: int
    color: str


@dataclass(frozen=True)
class Line:
    """A vertical marker (a threshold) at ``at`` of the axis (0 = ``low``, 1 = ``high``)."""

    name: str
    value: float
    at: float
    color: str
    dash: str


@dataclass(frozen=True)
class Histogram:
    """Overlaid histograms of raw scores on shared bins, with threshold lines."""

    title: str
    low: float
    high: float
    series: list[Series]
    lines: list[Line]
    top: int

    @property
    def bins(self) -> int:
        """Number of bins."""
        return len(self.series[0].counts) if self.series else 0


def histogram(title: str, series: dict[str, np.ndarray | None], lines: dict[str, float], bins: int = 30) -> Histogram:
    """Shared bins over every series and line (empty or None series are left out)."""
    data = {k: np.asarray(v, dtype=np.float64) for k, v in series.items() if v is not None and len(v)}
    values = np.concatenate([*data.values(), np.asarray(list(lines.values()), dtype=np.float64)])
    if not len(values):
        raise ValueError(f"{title}: nothing to draw")
    low, high = float(values.min()), float(values.max())
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, bins + 1)
    counted = [
        Series(name, [int(c) for c in np.histogram(v, edges)[0]], len(v), SERIES_COLORS[i % len(SERIES_COLORS)])
        for i, (name, v) in enumerate(data.items())
    ]
    markers = [
        Line(name, float(value), (float(value) - low) / (high - low), *LINE_STYLES[i % len(LINE_STYLES)])
        for i, (name, value) in enumerate(lines.items())
    ]
    top = max((max(s.counts) for s in counted), default=1)
    return Histogram(title, low, high, counted, markers, max(top, 1))
