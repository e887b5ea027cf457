"""One guard for every thread that matters: an unexpected exception is counted, logged and alarmed, never fatal.

Also :class:`RateLimitedLog`: whatever an outsider can make happen (junk messages, bad files) is
logged at most once per cause per interval, so it cannot flood the journal.

paho's network thread, the sender, the model reloader and the case writer each run code that a
hostile message, a strange file or a bug could make raise. Before this guard such an exception
ended the thread silently (the station kept scoring but stopped delivering). Now it ends the one
call: the thread lives on, ``stats``/``status`` say what happened and where.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from edge_ad.errors import first_line

__all__ = ["MAX_CAUSES", "Guard", "RateLimitedLog"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_CAUSES = 256


class Guard:
    """Runs callables so that an exception is counted and logged instead of killing the calling thread.

    Args:
        on_alarm: Called (outside the guard's lock) after the first failure at a place, so the status
            can say so; its own failures are logged and ignored.
        interval_s: A place's traceback is logged at most once per interval (the count goes on).
    """

    def __init__(self, on_alarm: Callable[[], None] | None = None, interval_s: float = 60.0) -> None:
        self.on_alarm = on_alarm
        self.interval_s = interval_s
        self.errors: dict[str, int] = {}
        self.last: str | None = None
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def call(self, where: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``, or None after counting and logging what it raised."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the point of the guard: nothing may end the thread
            self._failed(where, exc)
            return None

    def wrap(self, where: str, fn: Callable[..., T]) -> Callable[..., T | None]:
        """``fn`` behind the guard (for callbacks handed to libraries)."""

        def guarded(*args: Any, **kwargs: Any) -> T | None:
            return self.call(where, fn, *args, **kwargs)

        return guarded

    def record(self, where: str, exc: Exception) -> None:
        """Count, log and alarm ``exc`` raised at ``where`` (for code :meth:`call` cannot wrap, e.g. coroutines)."""
        self._failed(where, exc)

    def _failed(self, where: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            first = where not in self.errors
            self.errors[where] = self.errors.get(where, 0) + 1
            self.last = f"{where}: {type(exc).__name__}: {first_line(exc)}"
            loud = now - self._logged.get(where, -self.interval_s) >= self.interval_s
            if loud:
                self._logged[where] = now
            count = self.errors[where]
        if loud:
            logger.error("unexpected error in %s (%d so far), the thread goes on", where, count, exc_info=exc)
        if first and self.on_alarm is not None:
            try:
                self.on_alarm()
            except Exception:
                logger.exception("reporting the error in %s failed", where)

    @property
    def alarm(self) -> dict[str, Any] | None:
        """Status detail while any unexpected error has happened: the last one and the count per place."""
        with self._lock:
            if not self.errors:
                return None
            return {"alarm": True, "message": self.last, "errors": dict(self.errors)}


class RateLimitedLog:
    """Log each cause at most once per ``interval_s``; the next line says how many were not logged.

    With ``fold_numbers`` (the default) causes that differ only in their numbers, or in what they
    quote (a sender's field names, its values), are one cause. At most :data:`MAX_CAUSES` causes are
    remembered; beyond them every new cause is one ("other"), so senders cannot grow the table.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0, fold_numbers: bool = True) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.fold_numbers = fold_numbers
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, cause: str, message: str, *args: object) -> bool:
        """Log ``message`` under ``cause`` unless that cause was logged less than ``interval_s`` ago (True: logged).

        A folded cause is its first 40 characters with digits and quoted or bracketed parts folded, so
        "payload of 5000 bytes" and "payload of 6000 bytes" are one cause, and so are "unknown field(s)
        ['a']" and "unknown field(s) ['b']".
        """
        if self.fold_numbers:
            cause = re.sub(r"\d+", "N", re.sub(r"'[^']*'?|\"[^\"]*\"?|\[[^\]]*\]?|\([^)]*\)?", "_", cause))[:40]
        now = time.monotonic()
        with self._lock:
            if cause not in self._last and len(self._last) >= MAX_CAUSES - 1:  # one left for "other"
                cause = "other"
            if now - self._last.get(cause, -self.interval_s) < self.interval_s:
                self._quiet[cause] = self._quiet.get(cause, 0) + 1
                return False
            self._last[cause] = now
            quiet = self._quiet.pop(cause, 0)
        suffix = f" ({quiet} more like it in the last {self.interval_s:.0f} s not logged)" if quiet else ""
        self.logger.warning(message + "%s", *args, suffix)
        return True
