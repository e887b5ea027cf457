"""A stand-in for systemd's notify socket: what a station tells the service manager (READY, WATCHDOG, STATUS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = ["NotifySocket"]


class NotifySocket:
    """A datagram socket standing in for systemd's (abstract namespace or a path)."""

    def __init__(self, abstract: bool, tmp_path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-ad-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.messages: list[tuple[float, dict[str, str]]] = []

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append((time.monotonic(), dict(line.split("=", 1) for line in data.splitlines())))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in self.messages if key in m]

    def start_daemon(self, config: Path, watchdog_usec: int) -> subprocess.Popen:
        """``edge-ad run --config`` as systemd would start it: this socket and a watchdog of ``watchdog_usec``."""
        env = {**os.environ, "NOTIFY_SOCKET": self.env, "WATCHDOG_USEC": str(watchdog_usec)}
        return subprocess.Popen(
            [sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
