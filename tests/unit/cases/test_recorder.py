"""The daemon's case recorder: cases stored off the inspection loop, hints, and a store in trouble."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_ad.cases import recorder as recorder_module
from edge_ad.cases.recorder import CaseRecorder
from edge_ad.cases.store import CaseStore, open_store, queue_label
from edge_ad.config.cases import CasesConfig
from edge_ad.types import Verdict

SPACE = "patchcore|lite0|blocks.2+blocks.4|128x128"


def verdict(seq: int, kind: str = "NG") -> Verdict:
    return Verdict(seq, time.time(), kind, 9.0, 5.0, {"name": "brick", "version": "3"}, 4.0, seq)  # type: ignore[arg-type]


def vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=16).astype(np.float32)


def wait_for(condition, timeout: float = 10.0, show=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in time ({show() if show else ''})"
        time.sleep(0.02)


def test_remembers_cases_and_hints_the_label_of_the_closest_labelled_case(tmp_path):
    rec = CaseRecorder(CasesConfig(enabled=True), tmp_path, "st1")
    ids = [rec.remember(verdict(i), vec(i), SPACE, f"/ev/{i}.jpg") for i in range(1, 4)]
    wait_for(lambda: rec.stored == 3)
    assert rec.hint(vec(2), SPACE) is None  # nothing labelled
    rec.close()
    store = open_store(CasesConfig(enabled=True), tmp_path)
    assert store.get(ids[1]).payload["snapshot"] == "/ev/2.jpg" and store.get(ids[1]).payload["verdict"] == "NG"
    store.label(ids[1], "scratch")
    store.close()
    rec = CaseRecorder(CasesConfig(enabled=True), tmp_path, "st1")
    assert rec.hint(vec(2), SPACE) is None  # the first frame of a space only starts loading its labels
    wait_for(lambda: rec.hint(vec(2), SPACE) is not None)
    for i in range(5):  # unlabelled copies closer than the labelled case do not hide its label
        rec.remember(verdict(10 + i), vec(2) + 0.001 * vec(40 + i), SPACE, None)
    wait_for(lambda: rec.stored == 5)
    hint = rec.hint(vec(2) + 0.01 * vec(50), SPACE)
    assert hint is not None and hint["label"] == "scratch" and hint["case"] == ids[1] and hint["similarity"] > 0.99
    assert rec.hint(vec(77), SPACE) is None  # labelled case exists, but this one is not close enough
    assert rec.hint(vec(2), "other|space") is None
    rec.close()


def test_labels_queued_by_the_cli_reach_the_hints_within_seconds(tmp_path):
    rec = CaseRecorder(CasesConfig(enabled=True), tmp_path, "st1")
    ident = rec.remember(verdict(1), vec(1), SPACE, None)
    wait_for(lambda: rec.stored == 1)
    assert rec.hint(vec(1), SPACE) is None
    queue_label(tmp_path, ident, "hole")  # what 'edge-ad cases label' does while the daemon holds the store
    wait_for(lambda: (rec.hint(vec(1), SPACE) or {}).get("label") == "hole", timeout=5)
    rec.close()


def test_ok_frames_are_sampled_only_when_asked(tmp_path):
    never = CaseRecorder(CasesConfig(enabled=True), tmp_path / "a", "st1")
    assert never.wants("NG") and not any(never.wants("OK") for _ in range(100))
    half = CaseRecorder(CasesConfig(enabled=True, sample_ok=0.5), tmp_path / "b", "st1")
    share = np.mean([half.wants("OK") for _ in range(2000)])
    assert 0.45 < share < 0.55
    never.close()
    half.close()


def test_a_held_store_raises_the_alarm_counts_errors_and_recovers(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "RETRY_S", 0.3)
    holder = open_store(CasesConfig(enabled=True), tmp_path)  # another process would hold it the same way
    changes: list[str | None] = []
    rec = CaseRecorder(CasesConfig(enabled=True), tmp_path, "st1", on_alarm=lambda: changes.append(rec.alarm))
    started = time.perf_counter()
    assert rec.remember(verdict(1), vec(1), SPACE, None) is not None  # handed over without waiting
    assert rec.hint(vec(1), SPACE) is None
    assert time.perf_counter() - started < 0.1  # the store's trouble never holds up a verdict
    wait_for(lambda: rec.errors >= 1)
    assert rec.alarm and "case store unavailable" in rec.alarm and "in use by another process" in rec.alarm
    holder.close()
    wait_for(lambda: rec.alarm is None)  # reopened within RETRY_S; cases meanwhile were counted as errors
    rec.remember(verdict(2), vec(2), SPACE, None)
    wait_for(lambda: rec.stored == 1, show=lambda: (rec.counters(), rec.alarm))
    assert changes[0] and changes[-1] is None
    rec.close()


def test_a_slow_store_never_holds_up_the_loop_and_a_full_queue_drops_cases(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "MAX_PENDING", 3)
    gate = threading.Event()
    real_add = CaseStore.add

    def stuck_add(self, case, space):
        gate.wait(10)
        real_add(self, case, space)

    monkeypatch.setattr(CaseStore, "add", stuck_add)
    rec = CaseRecorder(CasesConfig(enabled=True), tmp_path, "st1")
    started = time.perf_counter()
    results = [rec.remember(verdict(i), vec(i), SPACE, None) for i in range(1, 8)]
    assert rec.hint(vec(1), SPACE) is None
    assert time.perf_counter() - started < 0.1
    assert None in results and rec.dropped >= 1
    assert "not keeping up" in (rec.alarm or "")
    gate.set()
    wait_for(lambda: rec.stored == sum(r is not None for r in results))
    rec.close()
    c = rec.counters()
    assert c["dropped"] >= 3 and c["errors"] == 0


def test_retention_runs_in_the_background(tmp_path):
    store = open_store(CasesConfig(enabled=True), tmp_path)
    for i in range(15):
        store.add(
            recorder_module.Case(recorder_module.case_id(1e9 + i, i, "st1"), vec(i), {"station": "st1", "ts": 1e9}),
            SPACE,
        )
    store.close()
    rec = CaseRecorder(CasesConfig(enabled=True, max_cases=10, max_age_days=None), tmp_path, "st1")
    rec.remember(verdict(1), vec(1), SPACE, None)
    wait_for(lambda: rec.stored == 1)
    rec.close()
    assert rec.expired == 5  # the 5 oldest, when the store was opened; then the new case
    again = open_store(CasesConfig(enabled=True), tmp_path)
    assert again.count() == 11
    again.close()


@pytest.mark.parametrize("bad", [{"hint_min_similarity": 1.5}, {"sample_ok": -0.1}, {"max_cases": 0}])
def test_config_bounds(bad):
    with pytest.raises(ValueError):
        CasesConfig(enabled=True, **bad)
