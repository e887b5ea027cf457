"""A simulated GigE Vision camera: Aravis' ``arv-fake-gv-camera-0.8`` on loopback, as a real process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from edge_ad.types import Frame

__all__ = ["FAKE_CAMERA", "FakeCamera", "read_frames"]

FAKE_CAMERA = "arv-fake-gv-camera-0.8"  # Debian aravis-tools (scripts/setup.sh installs it)


def _visible(device_id: str) -> bool:
    """Whether GigE Vision discovery on this host finds ``device_id`` (discovery only: no control taken)."""
    from edge_ad.capture.genicam.aravis import aravis

    Aravis = aravis()
    Aravis.update_device_list()
    return any(Aravis.get_device_id(i) == device_id for i in range(Aravis.get_n_devices()))


class FakeCamera:
    """One fake camera process on 127.0.0.1:3956 (GVCP's fixed port: one at a time on a host).

    Args:
        serial: Its serial number; its device id is ``Aravis-Fake-<serial>``.
        lost_per_thousand: Stream packets it drops on purpose (``-r``), to exercise resends.
    """

    def __init__(self, serial: str = "EDGEAD01", lost_per_thousand: int = 0) -> None:
        if shutil.which(FAKE_CAMERA) is None:
            pytest.fail(f"{FAKE_CAMERA} is missing: run scripts/setup.sh (Debian aravis-tools)")
        self.serial = serial
        self.lost = lost_per_thousand
        self.device_id = f"Aravis-Fake-{serial}"
        self.address = "127.0.0.1"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> FakeCamera:
        """Start it and wait until discovery finds it."""
        args = [FAKE_CAMERA, "-i", "lo", "-s", self.serial]
        if self.lost:
            args += ["-r", str(self.lost)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _visible(self.device_id):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{FAKE_CAMERA} did not come up (exit {self.process.poll()})")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """Pull the plug: SIGKILL, no goodbye on the wire."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


def read_frames(source, n: int, seconds: float = 20) -> list[Frame]:
    """Up to ``n`` frames from a frame source within ``seconds`` (IDLE polls skipped)."""
    got: list[Frame] = []
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        item = source.read()
        if isinstance(item, Frame):
            got.append(item)
    return got
