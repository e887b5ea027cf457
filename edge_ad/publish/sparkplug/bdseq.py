"""The Sparkplug birth/death sequence number (bdSeq), kept across restarts in the station's state directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_ad.guard import RateLimitedLog

__all__ = ["BDSEQ_FILE", "BdSeqCounter"]

logger = logging.getLogger(__name__)

BDSEQ_FILE = "sparkplug.bdseq"


class BdSeqCounter:
    """bdSeq: 0 for the first MQTT CONNECT ever, one more for every new CONNECT, 255 -> 0 (spec 3.0, section 5.2).

    The value is saved before the CONNECT that carries it, rewritten in place (4 bytes, no new file and
    no new block: it works on a full disk too), so a restart continues with the next number and a
    host never sees an old NDEATH match a new NBIRTH. A file that cannot be read or written is
    logged (rate-limited) and the count goes on in memory: Sparkplug never stops the station.

    Args:
        path: The file, e.g. ``<service.state_dir>/sparkplug.bdseq``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = RateLimitedLog(logger)
        self.last = self._read()  # the bdSeq of the latest CONNECT, None before the first one

    def _read(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._log.warning("bdseq read", "sparkplug: cannot read %s (%s); bdSeq starts at 0", self.path, exc)
            return None
        if not text.isdigit() or int(text) > 255:
            self._log.warning("bdseq value", "sparkplug: %s holds %r, not 0..255; bdSeq starts at 0", self.path, text)
            return None
        return int(text)

    def next(self) -> int:
        """The bdSeq for the next CONNECT (saved before it is returned)."""
        value = 0 if self.last is None else (self.last + 1) % 256
        self.last = value
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, f"{value:3d}\n".encode("ascii"), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._log.warning(
                "bdseq write", "sparkplug: cannot save bdSeq %d in %s (%s); counting in memory", value, self.path, exc
            )
        return value
