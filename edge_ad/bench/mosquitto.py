"""A private mosquitto on a free loopback port (benchmarks and tests; never the plant's broker)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge_ad.errors import EdgeAdError

__all__ = ["Broker", "bridge_config", "free_port", "start_mosquitto", "stop_process", "wait_for_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Poll until something listens on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


@dataclass(frozen=True)
class Broker:
    """Address of a running broker."""

    host: str
    port: int
    process: subprocess.Popen


@contextmanager
def start_mosquitto(workdir: Path, port: int | None = None, extra: str = "", persist: bool = False) -> Iterator[Broker]:
    """Start mosquitto on a (free) loopback port with a temp config; stop our own pid afterwards.

    ``extra`` lines are appended to the listener's configuration (TLS, password file...).
    ``persist`` keeps sessions and queued QoS 1 messages in ``workdir`` across a restart.
    """
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise EdgeAdError("mosquitto is not installed: apt-get install mosquitto (done by scripts/setup.sh)")
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    auth = "" if "allow_anonymous" in extra else "allow_anonymous true\n"
    if os.geteuid() == 0:  # as root mosquitto drops to its own user, who cannot read 0700 temp dirs
        auth += "user root\n"
    persistence = f"persistence true\npersistence_location {workdir}/\n" if persist else "persistence false\n"
    conf.write_text(f"per_listener_settings false\nlistener {port} 127.0.0.1\n{auth}{persistence}{extra}")
    log = (workdir / "mosquitto.log").open("w")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
        yield Broker("127.0.0.1", port, proc)
    finally:
        stop_process(proc, 5)
        log.close()


def bridge_config(name: str, remote: Broker, topic: str, direction: str = "out") -> str:
    """Configuration lines that bridge ``topic`` (QoS 1) from this broker to ``remote`` (``direction``: out, in, both).

    For :func:`start_mosquitto`'s ``extra``; a plant's bridge reads the same (docs/fleet.md).
    """
    return (
        f"connection {name}\naddress {remote.host}:{remote.port}\ntopic {topic} {direction} 1\n"
        "cleansession true\nnotifications false\nrestart_timeout 1 5\n"
    )


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM ``proc`` and wait ``timeout_s`` for it; SIGKILL it if it has not stopped by then."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
