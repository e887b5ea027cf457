"""systemd's notify protocol without a dependency: one datagram per message to ``$NOTIFY_SOCKET``.

Abstract sockets (``@name``) are supported. Outside systemd (no ``NOTIFY_SOCKET``) every call is a
no-op, so the daemon runs the same in a terminal and under ``Type=notify``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """READY / STATUS / WATCHDOG / STOPPING messages for the service manager.

    ``progress()`` is called by the main loop whenever it makes real progress (a frame arrived and
    was handled); it sends ``WATCHDOG=1`` at most every third of ``WatchdogSec``, so a loop stuck in
    a hung camera or inference stops the pings and systemd restarts the service.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and mine else None
        self._last_ping = 0.0
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        """Running under a service manager that listens."""
        return self.sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False (never an exception) when it cannot."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            logger.debug("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: Callable[[], str]) -> None:
        """The station is serving (after the self-test and the first scored frame).

        Called for every scored frame, so ``status`` is only evaluated when READY is actually sent.
        """
        if self.ready_sent or self.sock is None:
            return
        self.ready_sent = self.notify("READY=1", f"STATUS={status()}")
        self._last_ping = time.monotonic()

    def extend_start(self, seconds: float, text: str) -> None:
        """Start-up takes longer than usual (commissioning): give systemd ``seconds`` more from now."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", f"STATUS={text}")

    def status(self, text: str) -> None:
        """One line shown by ``systemctl status``."""
        self.notify(f"STATUS={text}")

    def progress(self) -> None:
        """The main loop moved on: ping the watchdog if it is due."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s / 3:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def stopping(self, reason: str) -> None:
        """Shutdown has begun."""
        self.notify("STOPPING=1", f"STATUS=stopping: {reason}")
