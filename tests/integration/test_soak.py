"""Soak: 100 000 frames at full speed through the real daemon and broker — bounded memory and files, no gaps."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.broker import Recorder
from tests.support.station import station_config
from tests.support.tiny_bundle import good_image, write_frames

pytestmark = pytest.mark.integration
FRAMES = int(os.environ.get("EDGE_AD_SOAK_FRAMES", "100000"))


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_soak_memory_files_and_sequence(tiny_models, mosquitto, tmp_path):
    frames = write_frames(tmp_path / "frames", [good_image(900 + i) for i in range(3)])
    config = station_config(
        tmp_path, str(frames), tiny_models / "tiny", mosquitto.port, station="soak",
        camera={"loop": True}, service={"state_dir": str(tmp_path / "state"), "max_frames": FRAMES,
                                        "stats_interval_s": 5},
    )  # fmt: skip
    seen = bytearray(FRAMES + 1)
    with Recorder(mosquitto, topic="edge_ad/soak/verdict") as rec:
        rec.client.on_message = lambda c, u, msg: seen.__setitem__(_seq(msg.payload), 1)  # flat memory: marks only
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ad.cli", "--log-level", "WARNING", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        samples = []  # (verdicts seen, rss kB, open fds)
        while proc.poll() is None:
            time.sleep(1)
            try:
                samples.append((sum(seen), _rss_kb(proc.pid), len(os.listdir(f"/proc/{proc.pid}/fd"))))
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                break
        _, stderr = proc.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while sum(seen) < FRAMES and time.monotonic() < deadline:
            time.sleep(0.2)
    assert proc.returncode == 0, stderr
    missing = [i for i in range(1, FRAMES + 1) if not seen[i]]
    assert not missing, f"{len(missing)} sequence numbers never arrived, first {missing[:5]}"
    warm = [s for s in samples if s[0] >= FRAMES // 10]
    assert len(warm) >= 3, f"too few samples after warm-up: {samples}"
    base_rss, peak_rss = warm[0][1], max(s[1] for s in warm)
    assert peak_rss <= base_rss * 1.10, f"RSS grew from {base_rss} kB to {peak_rss} kB after warm-up"
    assert max(s[2] for s in warm) <= warm[0][2] + 2, f"file descriptors grew: {[s[2] for s in warm]}"


def _seq(payload: bytes) -> int:
    start = payload.index(b'"seq":') + 6
    end = payload.index(b",", start)
    return int(payload[start:end])
