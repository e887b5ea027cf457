"""Evidence of NG parts: the frame and a heatmap overlay as JPEG, in a bounded directory."""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edge_ad.config.evidence import EvidenceConfig
from edge_ad.types import Frame, Result

__all__ = ["EvidenceStore", "heatmap_overlay"]

logger = logging.getLogger(__name__)


def heatmap_overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """The frame with the anomaly map in JET colours (red at 1.5 × threshold and above)."""
    heat = cv2.resize(anomaly_map.astype(np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    low = float(heat.min())
    scaled = np.clip((heat - low) / max(1.5 * threshold - low, 1e-6), 0, 1)
    colored = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image, 0.55, colored, 0.45, 0)


class EvidenceStore:
    """Writes ``<time>_<seq>.jpg`` and ``<time>_<seq>_heatmap.jpg``; removes the oldest beyond the bounds.

    Disk errors never stop inspection: they are logged once per kind and counted in ``errors``.
    """

    def __init__(self, config: EvidenceConfig, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.errors = 0
        self.pruned = 0
        self._last_error = ""
        folder.mkdir(parents=True, exist_ok=True)
        self._files: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in sorted(folder.glob("*.jpg")))
        self._bytes = sum(size for _, size in self._files)

    def save(self, frame: Frame, result: Result, seq: int, threshold: float) -> str | None:
        """Store the evidence of one NG frame; returns the frame's JPEG path (None on failure)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(frame.ts))
        base = self.folder / f"{stamp}_{seq:09d}"
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        images = [(base.with_suffix(".jpg"), frame.image)]
        if result.anomaly_map is not None:
            images.append((Path(f"{base}_heatmap.jpg"), heatmap_overlay(frame.image, result.anomaly_map, threshold)))
        try:
            for path, image in images:
                ok, data = cv2.imencode(".jpg", image, params)
                if not ok:
                    raise OSError(f"JPEG encoding failed for {path.name}")
                path.write_bytes(data.tobytes())
                self._files.append((path, len(data)))
                self._bytes += len(data)
        except OSError as exc:
            self.errors += 1
            if str(exc) != self._last_error:
                logger.error("evidence: cannot write to %s (%s); verdicts continue", self.folder, exc)
                self._last_error = str(exc)
            self._prune(force=True)
            return None
        self._prune()
        return str(images[0][0])

    def _prune(self, force: bool = False) -> None:
        max_bytes = self.config.max_mb * 1024 * 1024
        while self._files and (
            len(self._files) > self.config.max_files or self._bytes > max_bytes or (force and self._files)
        ):
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size
            self.pruned += 1
            force = False  # free one file per failure, then respect the bounds
