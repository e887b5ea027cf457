"""The case store against Qdrant's embedded (local, on-disk) mode: no server, no fake."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edge_ad.cases.store import Case, CaseStoreError, case_id, open_store, queue_label
from edge_ad.config.cases import CasesConfig

SPACE = "patchcore|lite0|blocks.2+blocks.4|128x128"
CONFIG = CasesConfig(enabled=True)


def vec(seed: int, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


def case(i: int, ts: float, embedding: np.ndarray | None = None, station: str = "st1") -> Case:
    return Case(case_id(ts, i, station), vec(i) if embedding is None else embedding, {"station": station, "ts": ts})


def test_add_search_label_and_reopen(tmp_path):
    store = open_store(CONFIG, tmp_path)
    now = time.time()
    for i in range(20):
        store.add(case(i, now + i), SPACE)
    query = vec(7) + 0.05 * vec(99)  # close to case 7
    found = store.similar(query, SPACE, k=3)
    assert found[0].id == case_id(now + 7, 7, "st1") and found[0].similarity > 0.9
    assert found[0].similarity >= found[1].similarity >= found[2].similarity
    store.label(found[0].id, "scratch")
    assert store.get(found[0].id).label == "scratch"
    assert store.similar(vec(1), "other|space", k=3) == []  # other embedding spaces are not mixed in
    store.close()
    again = open_store(CONFIG, tmp_path)  # on disk: survives a restart
    assert again.count() == 20 and again.get(found[0].id).label == "scratch"
    assert [m.id for m in again.recent(2)] == [case_id(now + 19, 19, "st1"), case_id(now + 18, 18, "st1")]
    with pytest.raises(CaseStoreError, match="no case with id 42"):
        again.label(42, "hole")
    again.close()


def test_cases_without_any_label_give_no_labelled_cases(tmp_path):
    """Found: a store with cases but no label made the daemon's label refresh fail and raise the cases alarm."""
    store = open_store(CONFIG, tmp_path)
    store.add(case(1, time.time()), SPACE)
    ids, labels, vectors = store.labelled(SPACE)
    assert ids == [] and labels == [] and vectors.shape[0] == 0
    store.close()


def test_retention_by_count_and_age_removes_the_oldest(tmp_path):
    store = open_store(CONFIG, tmp_path)
    now = time.time()
    ancient = [case(i, now - 200 * 86400 + i) for i in range(3)]
    fresh = [case(i, now - 100 + i) for i in range(3, 13)]
    for c in ancient + fresh:
        store.add(c, SPACE if c.id % 2 else "second|space")  # retention counts across spaces
    store.label(ancient[0].id, "hole")  # labelled cases are knowledge: never expired
    assert store.expire("st1", max_cases=100, max_age_days=90, now=now) == 2
    assert store.expire("st1", max_cases=6, max_age_days=None, now=now) == 4
    assert sorted(m.id for m in store.recent(100)) == sorted(c.id for c in [ancient[0], *fresh[4:]])
    assert store.expire("st1", max_cases=6, max_age_days=90, now=now) == 0
    store.close()


def test_a_second_process_reads_a_snapshot_and_queues_labels_while_the_store_is_held(tmp_path):
    holder = open_store(CONFIG, tmp_path)  # plays the daemon
    now = time.time()
    for i in range(5):
        holder.add(case(i, now + i), SPACE)
    target = case_id(now + 2, 2, "st1")
    script = f"""
from pathlib import Path
from edge_ad.cases.store import CaseStoreBusy, open_store, queue_label
from edge_ad.config.cases import CasesConfig
config, folder = CasesConfig(enabled=True), Path({str(tmp_path)!r})
try:
    open_store(config, folder)
except CaseStoreBusy as exc:
    print("busy", exc)
store = open_store(config, folder, snapshot_if_busy=True)
print("snapshot", store.read_only, store.count(), store.get({target}) is not None)
store.close()
queue_label(folder, {target}, "hole")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "busy cases.path:" in out and "in use by another process" in out
    assert "snapshot True 5 True" in out
    assert holder.get(target).label is None
    assert holder.apply_pending_labels() == 1  # what the daemon does every second
    assert holder.get(target).label == "hole"
    assert not list((tmp_path / "pending-labels").glob("*.json"))
    holder.close()


def test_busy_store_without_snapshot_is_a_clear_error(tmp_path):
    holder = open_store(CONFIG, tmp_path)
    script = f"""
from pathlib import Path
from edge_ad.cases.store import open_store
from edge_ad.config.cases import CasesConfig
open_store(CasesConfig(enabled=True), Path({str(tmp_path)!r}), wait_s=0.3)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "CaseStoreBusy" in run.stderr
    holder.close()


def test_queued_label_for_a_vanished_case_is_dropped_not_retried(tmp_path):
    store = open_store(CONFIG, tmp_path)
    store.add(case(1, time.time()), SPACE)
    queue_label(tmp_path, 123, "scratch")
    (tmp_path / "pending-labels" / "garbage.json").write_text("{not json")
    assert store.apply_pending_labels() == 0
    assert not list((tmp_path / "pending-labels").glob("*.json"))
    store.close()


def test_unreachable_server_names_the_url():
    config = CasesConfig(enabled=True, url="http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(CaseStoreError, match=r"cases.url: cannot reach Qdrant at http://127.0.0.1:9"):
        open_store(config, None)  # type: ignore[arg-type]


def test_unset_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("EDGE_AD_TEST_QDRANT_KEY", raising=False)
    config = CasesConfig(enabled=True, url="http://127.0.0.1:9", api_key_env="EDGE_AD_TEST_QDRANT_KEY")
    with pytest.raises(CaseStoreError, match="EDGE_AD_TEST_QDRANT_KEY is not set"):
        open_store(config, None)  # type: ignore[arg-type]


def test_config_rejects_path_and_url_together(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        CasesConfig(enabled=True, path=tmp_path, url="http://qdrant:6333")
    with pytest.raises(ValueError, match=r"api_key_env needs cases\.url"):
        CasesConfig(enabled=True, api_key_env="KEY")


def test_case_ids_sort_by_time():
    ids = [case_id(1_700_000_000 + t, seq, "st1") for seq, t in enumerate([0.0, 0.001, 0.5, 2.0])]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_missing_qdrant_client_is_a_config_error_with_the_install_command(monkeypatch):
    from edge_ad.cases.store import require_qdrant
    from edge_ad.errors import ConfigError

    monkeypatch.setitem(sys.modules, "qdrant_client", None)  # import fails as on a runtime-only install
    with pytest.raises(ConfigError, match=r"qdrant-client package is not installed; pip install 'edge_ad\[cases\]'"):
        require_qdrant()
