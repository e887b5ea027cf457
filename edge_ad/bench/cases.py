"""Similar-case search quality: do the defects of one kind find each other ahead of other kinds?

Every defect test image of a category is embedded by the bundle's model and stored in a fresh
embedded Qdrant store, exactly as the daemon stores NG frames; then each one is the query and
precision@k counts how many of its k nearest *other* cases are of its own kind.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from edge_ad.bundle import Bundle
from edge_ad.cases.store import Case, embedding_space, open_store
from edge_ad.config.cases import CasesConfig
from edge_ad.datasets.layout import find_category, read_images
from edge_ad.errors import ConfigError
from edge_ad.inference.engine import AnomalyModel
from edge_ad.types import Frame

__all__ = ["case_precision"]


def case_precision(bundle: Bundle, data: Path, k: int = 5, variant: str = "fp32") -> dict:
    """Precision@k of similar-case search on the defect test images of ``data`` (leave-one-out).

    Returns:
        ``precision`` (mean over queries), ``per_kind``, ``chance`` (a random neighbour's precision),
        ``cases``, ``insert_ms`` and ``query_ms`` (median per case, embedded store).
    """
    model = AnomalyModel(bundle, variant, "CPU")
    if not model.embeds:
        raise ConfigError(f"{bundle.path}: the model gives no embedding; similar-case search needs PatchCore")
    items = [(path, kind) for path, label, kind in find_category(data).test_images() if label == 1]
    images = read_images([path for path, _ in items])
    kinds = [kind for _, kind in items]
    space = embedding_space(bundle.manifest)
    embeddings = [model.infer(Frame(image=image, ts=0.0, index=1)).embedding for image in images]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(CasesConfig(enabled=True), Path(tmp))
        try:
            insert, query, hits = [], [], []
            for i, (embedding, kind) in enumerate(zip(embeddings, kinds, strict=True)):
                started = time.perf_counter()
                store.add(Case(i + 1, embedding, {"kind": kind, "station": "bench", "ts": 0.0}), space)
                insert.append(time.perf_counter() - started)
            for i, (embedding, kind) in enumerate(zip(embeddings, kinds, strict=True)):
                started = time.perf_counter()
                found = store.similar(embedding, space, k + 1)
                query.append(time.perf_counter() - started)
                others = [m for m in found if m.id != i + 1][:k]
                hits.append(np.mean([m.payload["kind"] == kind for m in others]))
        finally:
            store.close()
    hits_arr, kinds_arr = np.array(hits), np.array(kinds)
    chance = float(np.mean([(np.sum(kinds_arr == kind) - 1) / (len(kinds) - 1) for kind in kinds]))
    return {
        "bundle": str(bundle.path),
        "data": str(data),
        "k": k,
        "cases": len(kinds),
        "precision": float(hits_arr.mean()),
        "per_kind": {kind: float(hits_arr[kinds_arr == kind].mean()) for kind in sorted(set(kinds))},
        "chance": chance,
        "insert_ms": 1000 * float(np.median(insert)),
        "query_ms": 1000 * float(np.median(query)),
    }
