"""Evidence of NG parts: the frame and a heatmap overlay as JPEG, in a bounded directory."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable
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


MB = 1024 * 1024
CLEAR_MARGIN = 1 * MB  # the alarm clears only with this much free beyond the reserve (no flapping)


class EvidenceStore:
    """Writes ``<time>_<seq>.jpg`` and ``<time>_<seq>_heatmap.jpg``; removes the oldest beyond the bounds.

    Disk trouble never stops inspection: failed writes are counted in ``errors``, frames not kept
    for lack of space in ``skipped``, and :attr:`alarm` says why evidence is not kept as configured
    (``on_alarm`` is called whenever it is raised or cleared). Before each write the oldest files are
    removed until ``min_free_mb`` is free on the filesystem.
    """

    def __init__(self, config: EvidenceConfig, folder: Path, on_alarm: Callable[[], None] | None = None) -> None:
        self.config = config
        self.folder = folder
        self.errors = 0
        self.pruned = 0
        self.skipped = 0
        self.alarm: str | None = None
        self._on_alarm = on_alarm
        folder.mkdir(parents=True, exist_ok=True)
        self._files: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in sorted(folder.glob("*.jpg")))
        self._bytes = sum(size for _, size in self._files)

    def save(self, frame: Frame, result: Result, seq: int, threshold: float) -> str | None:
        """Store the evidence of one NG frame; returns the frame's JPEG path (None when not kept)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(frame.ts))
        base = self.folder / f"{stamp}_{seq:09d}"
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        images = [(base.with_suffix(".jpg"), frame.image)]
        if result.anomaly_map is not None:
            images.append((Path(f"{base}_heatmap.jpg"), heatmap_overlay(frame.image, result.anomaly_map, threshold)))
        short, room = self._make_room()
        if not room:
            self.skipped += 1
            self._raise(short)
            return None
        written: Path | None = None
        try:
            for path, image in images:
                ok, data = cv2.imencode(".jpg", image, params)
                if not ok:
                    raise OSError(f"JPEG encoding failed for {path.name}")
                written = path
                path.write_bytes(data.tobytes())
                self._files.append((path, len(data)))
                self._bytes += len(data)
                written = None
        except OSError as exc:
            if written is not None:
                with contextlib.suppress(OSError):
                    written.unlink(missing_ok=True)  # no half-written JPEG left behind
            self.errors += 1
            why = exc.strerror or exc
            message = f"evidence: cannot write to {self.folder} ({why}); oldest evidence removed, verdicts continue"
            self._prune(force=True)
            self._raise(message)
            return None
        self._prune()
        if short is not None or self.alarm is None or self._comfortable():
            self._raise(short)
        return str(images[0][0])

    def counters(self) -> dict[str, int]:
        """Failed writes, files removed, NG frames not kept for lack of space (for the stats message)."""
        return {"errors": self.errors, "pruned": self.pruned, "skipped": self.skipped}

    def _free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.folder).free
        except OSError:
            return None

    def _comfortable(self) -> bool:
        free = self._free_bytes()
        return free is None or free >= self.config.min_free_mb * MB + CLEAR_MARGIN

    def _make_room(self) -> tuple[str | None, bool]:
        """Remove the oldest files until the reserve is free: (why room was short or None, whether it now is)."""
        reserve = self.config.min_free_mb * MB
        free = self._free_bytes() if reserve else None
        if free is None or free >= reserve:
            return None, True
        freed = 0
        while self._files and free + freed < reserve:
            size = self._drop_oldest()
            if size is None:
                return self.alarm, False
            freed += size
        message = (
            f"evidence: less than evidence.min_free_mb ({self.config.min_free_mb:g} MB) free on the filesystem "
            f"of {self.folder}; oldest evidence removed"
        )
        enough = free + freed >= reserve
        return (message if enough else message + ", new evidence not kept"), enough

    def _raise(self, message: str | None) -> None:
        """Set or clear (None) the alarm; log and notify on changes."""
        if message == self.alarm:
            return
        if message is None:
            logger.info("evidence: disk alarm cleared")
        else:
            logger.warning("%s", message)
        self.alarm = message
        if self._on_alarm is not None:
            self._on_alarm()

    def _drop_oldest(self) -> int | None:
        """Remove the oldest file: its size, or None when the filesystem refuses (alarm raised, nothing lost)."""
        path, size = self._files[0]
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # read-only or chmod-ed folder: inspection goes on without new evidence
            self.errors += 1
            self._raise(
                f"evidence: cannot remove old evidence in {self.folder} ({exc.strerror or exc}); "
                "new evidence not kept, verdicts continue"
            )
            return None
        self._files.popleft()
        self._bytes -= size
        self.pruned += 1
        return size

    def _prune(self, force: bool = False) -> None:
        max_bytes = self.config.max_mb * MB
        while self._files and (
            len(self._files) > self.config.max_files or self._bytes > max_bytes or (force and self._files)
        ):
            if self._drop_oldest() is None:
                return
            force = False  # free one file per failure, then respect the bounds
