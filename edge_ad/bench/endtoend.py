"""End-to-end benchmark: the real daemon, a replay camera and a private mosquitto.

Latency is measured from the moment the camera thread has the decoded frame (the verdict's
``ts``) to the moment a subscriber on the same machine receives the verdict; the daemon's peak
RSS comes from the kernel's accounting of the finished process (``wait4``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.bench.mosquitto import Broker, start_mosquitto
from edge_ad.errors import EdgeAdError

__all__ = [
    "VerdictRecorder",
    "bench_end_to_end",
    "copy_frames",
    "daemon_pass",
    "latencies",
    "station_config",
    "vm_hwm_kb",
]

STATION = "bench"


class VerdictRecorder:
    """Subscriber that stamps every verdict with its arrival time."""

    def __init__(self, host: str, port: int) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-ad-bench-subscriber-{os.getpid()}")
        self.client.on_message = lambda c, u, msg: self.arrivals.append((time.time(), json.loads(msg.payload)))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"edge_ad/{STATION}/verdict", qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise EdgeAdError(f"bench: cannot subscribe on the private broker {host}:{port}")

    def close(self) -> None:
        """Stop listening."""
        self.client.loop_stop()
        self.client.disconnect()


def station_config(
    workdir: Path, bundle: Path, variant: str, frames_dir: Path, port: int, fps: float, count: int, **extra: Any
) -> Path:
    """``workdir/station.yaml`` for the bench station (``extra``: further sections, e.g. ``console``)."""
    config = {
        "station": STATION,
        "camera": {"source": str(frames_dir), "fps": fps, "loop": True},
        "model": {"path": str(bundle.resolve()), "variant": variant},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "service": {"state_dir": str(workdir / "state"), "max_frames": count, "log_level": "WARNING"},
        "evidence": {"enabled": False},
        **extra,
    }
    path = workdir / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def copy_frames(images: list[Path], frames_dir: Path) -> None:
    """Copy ``images`` into ``frames_dir`` in order (the replay camera's folder)."""
    frames_dir.mkdir()
    for i, path in enumerate(images):
        shutil.copy(path, frames_dir / f"{i:05d}{path.suffix}")


def daemon_pass(workdir: Path, config: Path, broker: Broker, frames: int) -> tuple[list[tuple[float, dict]], int]:
    """One ``edge-ad run`` of ``config`` to its ``max_frames``: verdicts as received, and peak RSS.

    Returns:
        The verdicts as (arrival time, verdict), and the daemon's peak resident set in kB.

    Raises:
        EdgeAdError: The daemon exited with an error.
    """
    verdicts = VerdictRecorder(broker.host, broker.port)
    try:
        log = workdir / "daemon.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
            peak_kb = _watch_peak_rss(proc)
        stderr = log.read_text(errors="replace")
        deadline = time.monotonic() + 10
        while len(verdicts.arrivals) < frames and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        verdicts.close()
    if proc.returncode != 0:
        raise EdgeAdError(f"bench: the daemon exited with {proc.returncode}: {stderr.strip()[-500:]}")
    return verdicts.arrivals, peak_kb


def latencies(arrivals: list[tuple[float, dict]]) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end and model latencies (ms) of the verdicts, the first 10 left out.

    The first frames include compilation and connection set-up.
    """
    got = arrivals[10:]
    e2e = np.array([(arrived - v["ts"]) * 1000 for arrived, v in got])
    model = np.array([v["latency_ms"] for _, v in got])
    return e2e, model


def bench_end_to_end(bundle: Path, images: list[Path], variant: str, frames: int = 300, fps: float = 20.0) -> dict:
    """Run ``edge-ad run`` on ``images`` (looped) for ``frames`` frames at ``fps``; latency and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="edge-ad-e2e-") as tmp:
        workdir = Path(tmp)
        frames_dir = workdir / "frames"
        copy_frames(images, frames_dir)
        with start_mosquitto(workdir) as broker:
            config = station_config(workdir, bundle, variant, frames_dir, broker.port, fps, frames)
            arrivals, peak_kb = daemon_pass(workdir, config, broker, frames)
    e2e, model = latencies(arrivals)
    return {
        "variant": variant,
        "frames": frames,
        "received": len(arrivals),
        "fps": fps,
        "e2e_p50_ms": float(np.percentile(e2e, 50)),
        "e2e_p99_ms": float(np.percentile(e2e, 99)),
        "model_p50_ms": float(np.percentile(model, 50)),
        "model_p99_ms": float(np.percentile(model, 99)),
        "peak_rss_mb": peak_kb / 1024,
    }


def vm_hwm_kb(pid: int) -> int | None:
    """The process's peak resident set so far (kB, ``VmHWM`` in ``/proc/<pid>/status``); None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):  # exiting between poll() and the read
        return None
    return None


def _watch_peak_rss(proc: subprocess.Popen, interval: float = 0.05) -> int:
    """Wait for ``proc``; its peak resident set (kB) from ``/proc/<pid>/status`` ``VmHWM``.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the parent's resident set over a fork into the
    child's maximum, so a daemon started from a benchmark that has loaded torch would report the
    benchmark's memory (538 MB measured that way at 256 px, 230 MB in fact).
    """
    peak = 0
    while proc.poll() is None:
        peak = max(peak, vm_hwm_kb(proc.pid) or 0)
        time.sleep(interval)
    return peak
