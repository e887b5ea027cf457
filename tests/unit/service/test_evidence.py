from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from edge_ad.config import EvidenceConfig
from edge_ad.service.evidence import MB, EvidenceStore
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


class FakeDisk:
    """shutil.disk_usage stand-in reporting ``free`` bytes."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, path):
        return shutil._ntuple_diskusage(10 * MB, 10 * MB - self.free, self.free)


def test_reserve_removes_the_oldest_and_raises_then_clears_the_alarm(tmp_path, monkeypatch):
    disk = FakeDisk(free=100 * MB)
    monkeypatch.setattr("edge_ad.service.evidence.shutil.disk_usage", disk)
    changes = []
    store = EvidenceStore(EvidenceConfig(min_free_mb=1), tmp_path, on_alarm=lambda: changes.append(store.alarm))
    for i in range(1, 4):
        assert store.save(*ng(i), seq=i, threshold=1.0)
    assert store.alarm is None and changes == []
    disk.free = 1 * MB - 10  # someone else filled the disk: our oldest files make room
    assert store.save(*ng(4), seq=4, threshold=1.0)
    assert store.pruned >= 1 and "evidence.min_free_mb" in store.alarm and len(changes) == 1
    for i in range(5, 8):  # still short: no repeated notifications
        store.save(*ng(i), seq=i, threshold=1.0)
    assert len(changes) == 1
    disk.free = 1 * MB + 100  # enough for the reserve, not for clearing: no flapping
    store.save(*ng(8), seq=8, threshold=1.0)
    assert store.alarm is not None and len(changes) == 1
    disk.free = 50 * MB
    store.save(*ng(9), seq=9, threshold=1.0)
    assert store.alarm is None and changes[-1] is None and len(changes) == 2


def test_no_room_at_all_skips_the_evidence_not_the_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_ad.service.evidence.shutil.disk_usage", FakeDisk(free=10))
    store = EvidenceStore(EvidenceConfig(min_free_mb=1), tmp_path)
    assert store.save(*ng(1), seq=1, threshold=1.0) is None
    assert store.skipped == 1 and store.errors == 0 and list(tmp_path.iterdir()) == []
    assert store.alarm.endswith("new evidence not kept")


def test_failed_write_leaves_no_partial_file_and_raises_the_alarm_once(tmp_path, monkeypatch):
    store = EvidenceStore(EvidenceConfig(min_free_mb=0), tmp_path)
    real_write = Path.write_bytes

    def half_then_full(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr("pathlib.Path.write_bytes", half_then_full)
    store.save(*ng(1), seq=1, threshold=1.0)
    alarm = store.alarm
    store.save(*ng(2), seq=2, threshold=1.0)
    assert store.errors == 2 and list(tmp_path.iterdir()) == []
    assert alarm == store.alarm and "No space left on device" in alarm and str(tmp_path) in alarm


def test_a_read_only_evidence_folder_degrades_and_recovers(tmp_path, monkeypatch):
    # before: the PermissionError of pruning escaped the error handler, the frame's verdict was never
    # published and the daemon stopped with status "error"
    store = EvidenceStore(EvidenceConfig(max_files=2), tmp_path, on_alarm=lambda: None)
    for i in (1, 2):
        assert store.save(*ng(i), seq=i, threshold=1.0) is not None
    real_write, real_unlink = Path.write_bytes, Path.unlink

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("pathlib.Path.write_bytes", read_only)
    monkeypatch.setattr("pathlib.Path.unlink", read_only)
    for i in (3, 4):
        assert store.save(*ng(i), seq=i, threshold=1.0) is None  # no exception: evidence skipped
    assert store.errors >= 2 and "Permission denied" in store.alarm
    monkeypatch.setattr("pathlib.Path.write_bytes", real_write)
    monkeypatch.setattr("pathlib.Path.unlink", real_unlink)
    assert store.save(*ng(5), seq=5, threshold=1.0) is not None and store.alarm is None  # recovers by itself
    assert len(list(tmp_path.glob("*.jpg"))) == 2
