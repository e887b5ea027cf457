"""A cached compiled blob is used only when it is the blob the station wrote (hash in its MAC'd ledger)."""

from __future__ import annotations

import json

import numpy as np

from edge_ad.bundle import load_bundle
from edge_ad.inference import compile_cache
from edge_ad.inference.engine import AnomalyModel
from edge_ad.types import Frame
from tests.support.tiny_bundle import defect_image, good_image


def scores(model: AnomalyModel) -> list[float]:
    return [model.infer(Frame(image=f(s), ts=0.0, index=1)).score for f in (good_image, defect_image) for s in range(5)]


def test_an_altered_blob_is_recompiled_not_run(tiny_models, tmp_path):
    """Found: 4 KiB XORed in the middle of ov_cache/*.blob was used (cached load) and 8 of 45 scores changed."""
    bundle, cache = load_bundle(tiny_models / "tiny"), tmp_path / "ov_cache"
    reference = scores(AnomalyModel(bundle, "fp32", "CPU"))
    assert scores(AnomalyModel(bundle, "fp32", "CPU", cache)) == reference
    (blob,) = cache.glob("*.blob")
    ledger = json.loads((cache / "ledger.json").read_text())
    assert list(ledger["blobs"]) == [blob.name] and oct((cache / "ledger.key").stat().st_mode & 0o777) == "0o600"
    before = compile_cache.discarded()
    assert scores(AnomalyModel(bundle, "fp32", "CPU", cache)) == reference  # an intact blob is reused
    assert compile_cache.discarded() == before
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    blob.write_bytes(bytes(data))
    assert scores(AnomalyModel(bundle, "fp32", "CPU", cache)) == reference
    assert compile_cache.discarded() == before + 1
    assert json.loads((cache / "ledger.json").read_text())["blobs"][blob.name] != ledger["blobs"][blob.name]


def test_a_forged_ledger_trusts_no_blob(tiny_models, tmp_path):
    bundle, cache = load_bundle(tiny_models / "tiny"), tmp_path / "ov_cache"
    AnomalyModel(bundle, "fp32", "CPU", cache)
    (blob,) = cache.glob("*.blob")
    blob.write_bytes(blob.read_bytes()[:-16] + bytes(16))  # altered...
    ledger = json.loads((cache / "ledger.json").read_text())
    import hashlib

    ledger["blobs"][blob.name] = hashlib.sha256(blob.read_bytes()).hexdigest()  # ...and "recorded" without the key
    (cache / "ledger.json").write_text(json.dumps(ledger))
    before = compile_cache.discarded()
    model = AnomalyModel(bundle, "fp32", "CPU", cache)
    assert compile_cache.discarded() == before + 1 and np.isfinite(scores(model)).all()
