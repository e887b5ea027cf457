from __future__ import annotations

import os

import cv2
import numpy as np

from edge_ad.config import EvidenceConfig
from edge_ad.service.evidence import EvidenceStore
from edge_ad.types import Frame, Result


def ng(i: int) -> tuple[Frame, Result]:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return Frame(image=image, ts=1_700_000_000 + i, index=i), Result(
        score=5.0, anomaly_map=rng.random((4, 4)).astype(np.float32), latency_ms=1.0
    )


def test_saves_frame_and_heatmap_and_keeps_the_newest(tmp_path):
    store = EvidenceStore(EvidenceConfig(max_files=4), tmp_path / "ev")
    paths = [store.save(*ng(i), seq=i, threshold=1.0) for i in range(1, 5)]
    files = sorted(p.name for p in (tmp_path / "ev").iterdir())
    assert len(files) == 4 and files[-1].endswith("_000000004_heatmap.jpg")  # the two newest NG, 2 files each
    assert paths[-1].endswith("_000000004.jpg") and os.path.exists(paths[-1])
    assert cv2.imread(paths[-1]).shape == (32, 32, 3)
    assert store.pruned == 4 and store.errors == 0


def test_size_bound_and_restart_picks_up_existing_files(tmp_path):
    config = EvidenceConfig(max_mb=0.004)  # ~4 KB: one or two JPEGs of noise
    store = EvidenceStore(config, tmp_path)
    for i in range(1, 6):
        store.save(*ng(i), seq=i, threshold=1.0)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 0.004 * 1024 * 1024
    again = EvidenceStore(config, tmp_path)  # daemon restart: old evidence is still accounted for
    assert len(again._files) == len(list(tmp_path.iterdir()))


def test_write_failure_counts_errors_without_raising(tmp_path, monkeypatch):
    store = EvidenceStore(EvidenceConfig(), tmp_path)

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", full_disk)
    assert store.save(*ng(1), seq=1, threshold=1.0) is None
    assert store.save(*ng(2), seq=2, threshold=1.0) is None
    assert store.errors == 2
