"""The daemon's side of the case store: remember NG frames, hint labels, never hold up a verdict.

Every store operation runs on one worker thread. The inspection loop hands cases over without
waiting (a bounded queue; beyond it a case is dropped and counted). Label hints come from an
in-memory copy of the labelled cases (few, next to the many unlabelled ones), reloaded by the
worker when labels change, so a hint costs the loop one small matrix product and never a wait.
A store that cannot be opened, fails or fills is retried every few seconds; meanwhile verdicts go
on, errors are counted and :attr:`CaseRecorder.alarm` says why (shown on the retained status).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.cases.store import Case, CaseStore, case_id, iso, open_store
from edge_ad.config.cases import CasesConfig
from edge_ad.types import Verdict

__all__ = ["CaseRecorder"]

logger = logging.getLogger(__name__)

MAX_PENDING = 256  # cases waiting for the store before new ones are dropped
RETRY_S = 5.0  # reopen a store that failed after this long
EXPIRE_S = 60.0  # retention is enforced this often (and once after opening)
LABELS_S = 1.0  # labels queued by 'edge-ad cases label' are applied this often
REFRESH_S = 30.0  # labelled cases are re-read this often (a server's labels may come from elsewhere)

Labelled = tuple[list[int], list[str], np.ndarray]  # ids, labels, unit embeddings [n, D]


class CaseRecorder:
    """Remembers frames in the case store from a worker thread.

    Args:
        config: The ``cases`` section (enabled).
        folder: The embedded store's directory.
        station: This station's name (payload and retention scope).
        on_alarm: Called (from the worker) whenever :attr:`alarm` is raised or cleared.
    """

    def __init__(
        self, config: CasesConfig, folder: Path, station: str, on_alarm: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.folder = folder
        self.station = station
        self.stored = self.errors = self.dropped = self.hints = self.expired = 0
        self.alarm: str | None = None
        self._on_alarm = on_alarm
        self._store: CaseStore | None = None
        self._next_open = self._next_expire = self._next_labels = self._next_refresh = 0.0
        self._labelled: dict[str, Labelled] = {}  # per embedding space; replaced whole, read by the loop
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple] | None] = queue.Queue(MAX_PENDING)
        self._random = random.Random(0)
        self._thread = threading.Thread(target=self._work, name="cases", daemon=True)
        self._thread.start()

    # -- inspection loop side ------------------------------------------------------------------

    def wants(self, verdict: str) -> bool:
        """Whether a frame with this verdict is to be remembered (every NG, a sample of OK)."""
        return verdict == "NG" or (self.config.sample_ok > 0 and self._random.random() < self.config.sample_ok)

    def hint(self, embedding: np.ndarray, space: str) -> dict[str, Any] | None:
        """The label of the most similar labelled past case when it is similar enough, else None."""
        labelled = self._labelled.get(space)
        if labelled is None:  # first frame of this space: the worker loads its labelled cases
            self._labelled = {**self._labelled, space: ([], [], np.zeros((0, 0), np.float32))}
            self._submit(self._load_labelled, (space,))
            return None
        ids, labels, vectors = labelled
        if not ids:
            return None
        v = np.asarray(embedding, dtype=np.float32).reshape(-1)
        similarity = vectors @ (v / max(float(np.linalg.norm(v)), 1e-12))
        best = int(similarity.argmax())
        if similarity[best] < self.config.hint_min_similarity:
            return None
        self.hints += 1
        return {"label": labels[best], "case": ids[best], "similarity": round(float(similarity[best]), 4)}

    def remember(self, verdict: Verdict, embedding: np.ndarray, space: str, snapshot: str | None) -> int | None:
        """Queue one judged frame for the store; returns its case id (None when dropped)."""
        ident = case_id(verdict.ts, verdict.seq, self.station)
        payload = {
            "station": self.station,
            "ts": verdict.ts,
            "time": iso(verdict.ts),
            "seq": verdict.seq,
            "verdict": verdict.verdict,
            "score": verdict.score,
            "threshold": verdict.threshold,
            "model": verdict.model["name"],
            "model_version": verdict.model["version"],
            "snapshot": snapshot,
            "origin": verdict.origin,
            "label": None,
        }
        case = Case(ident, np.asarray(embedding, dtype=np.float32), payload)
        return ident if self._submit(self._add, (case, space)) else None

    def counters(self) -> dict[str, int]:
        """For the stats message."""
        return {
            "stored": self.stored,
            "errors": self.errors,
            "dropped": self.dropped,
            "expired": self.expired,
            "hints": self.hints,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then release the store."""
        with contextlib.suppress(queue.Full):
            self._jobs.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _submit(self, fn: Callable[..., Any], args: tuple) -> bool:
        try:
            self._jobs.put_nowait((fn, args))
            return True
        except queue.Full:
            self.dropped += 1
            self._set_alarm(f"case store is not keeping up ({MAX_PENDING} cases waiting); new cases are dropped")
            return False

    # -- worker side ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=LABELS_S)
            except queue.Empty:
                job = ()  # nothing to do: housekeeping only
            if job is None:
                break
            self._housekeeping()
            if job:
                self._run(*job)
        if self._store is not None:
            self._store.close()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        store = self._open()
        if store is None:  # the alarm says why
            self.errors += 1
            return
        try:
            fn(store, *args)
        except Exception as exc:
            self._failed(exc)

    def _add(self, store: CaseStore, case: Case, space: str) -> None:
        store.add(case, space)
        self.stored += 1
        self._set_alarm(None)

    def _load_labelled(self, store: CaseStore, space: str) -> None:
        self._labelled = {**self._labelled, space: store.labelled(space)}

    def _open(self) -> CaseStore | None:
        if self._store is None and time.monotonic() >= self._next_open:
            try:
                self._store = open_store(self.config, self.folder, wait_s=2.0)
                self._next_expire = self._next_refresh = 0.0  # retention and labelled cases, now
                self._set_alarm(None)
                logger.info("cases: store open (%s)", self.config.url or self.folder)
            except Exception as exc:
                self._next_open = time.monotonic() + RETRY_S
                self._set_alarm(f"case store unavailable: {exc}")
                logger.warning("cases: %s", exc)
        return self._store

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        message = f"case store failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self.alarm != message:
            logger.warning("cases: %s", message)
        self._set_alarm(message)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._store is None and now < self._next_open:
            return
        store = self._open()
        if store is None:
            return
        try:
            if now >= self._next_labels:
                self._next_labels = now + LABELS_S
                if store.apply_pending_labels():
                    logger.info("cases: applied queued labels")
                    self._next_refresh = 0.0
            if now >= self._next_refresh:
                self._next_refresh = now + REFRESH_S
                for space in list(self._labelled):
                    self._load_labelled(store, space)
            if now >= self._next_expire:
                self._next_expire = now + EXPIRE_S
                removed = store.expire(self.station, self.config.max_cases, self.config.max_age_days)
                self.expired += removed
                if removed:
                    logger.info("cases: %d removed by retention", removed)
        except Exception as exc:
            self._failed(exc)

    def _set_alarm(self, message: str | None) -> None:
        if message != self.alarm:
            self.alarm = message
            if self._on_alarm is not None:
                self._on_alarm()
