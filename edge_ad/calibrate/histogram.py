"""Score histogram as a PNG drawn with OpenCV (the device has no matplotlib)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["score_histogram"]

COLORS = [(60, 160, 60), (200, 140, 40), (40, 40, 220), (160, 60, 160)]  # BGR per series
LINES = [(90, 90, 90), (0, 0, 0)]
W, H, PAD = 720, 360, 48


def score_histogram(path: Path, series: dict[str, np.ndarray | None], lines: dict[str, float], bins: int = 40) -> Path:
    """Overlaid histograms of raw scores with vertical threshold lines; written to ``path``."""
    data = {k: np.asarray(v, dtype=np.float64) for k, v in series.items() if v is not None and len(v)}
    values = np.concatenate([*data.values(), np.array(list(lines.values()))])
    lo, hi = float(values.min()), float(values.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(v, edges)[0] for k, v in data.items()}
    top = max(1, max((int(c.max()) for c in counts.values()), default=1))
    canvas = np.full((H, W, 3), 255, np.uint8)

    def x_of(value: float) -> int:
        return int(PAD + (value - lo) / (hi - lo) * (W - 2 * PAD))

    bar = (W - 2 * PAD) / bins
    for i, (name, c) in enumerate(counts.items()):
        color = COLORS[i % len(COLORS)]
        for b, n in enumerate(c):
            if n:
                x0 = int(PAD + b * bar + i * bar / max(1, len(counts)))
                x1 = int(x0 + bar / max(1, len(counts)))
                y0 = int(H - PAD - n / top * (H - 2 * PAD))
                cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), H - PAD), color, -1)
        cv2.putText(canvas, f"{name} ({len(data[name])})", (PAD + 8, 20 + 18 * i), 0, 0.5, color, 1, cv2.LINE_AA)
    for j, (name, value) in enumerate(lines.items()):
        x = x_of(value)
        cv2.line(canvas, (x, PAD // 2), (x, H - PAD), LINES[j % len(LINES)], 1 + j)
        label_y = 20 + 18 * (len(counts) + j)  # below the legend
        cv2.putText(canvas, f"{name} threshold {value:.4g}", (min(x + 4, W - 190), label_y), 0, 0.45,
                    LINES[j % len(LINES)], 1, cv2.LINE_AA)  # fmt: skip
    cv2.line(canvas, (PAD, H - PAD), (W - PAD, H - PAD), (0, 0, 0), 1)
    cv2.putText(canvas, f"{lo:.4g}", (PAD, H - PAD + 18), 0, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{hi:.4g}", (W - PAD - 50, H - PAD + 18), 0, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "raw anomaly score", (W // 2 - 70, H - 12), 0, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"cannot write {path}")
    return path
