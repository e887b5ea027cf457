"""A cached compiled blob is used only when it is the blob the station wrote (hash in its MAC'd ledger)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

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


@pytest.fixture
def station_key(monkeypatch):
    """This process MACs with a station key (reset after the test)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_ad import integrity

    monkeypatch.setattr(integrity, "_key", None)
    integrity.use_station_key(Ed25519PrivateKey.generate())
    return integrity


def test_a_ledger_key_left_in_the_cache_is_not_trusted_with_a_station_key(tiny_models, tmp_path, station_key):
    """Found by the probe: an attacker replaced ov_cache/ledger.key, MAC'd his own ledger and his blob ran."""
    import hashlib
    import hmac

    bundle, cache = load_bundle(tiny_models / "tiny"), tmp_path / "ov_cache"
    reference = scores(AnomalyModel(bundle, "fp32", "CPU", cache))
    assert not (cache / "ledger.key").exists(), "the key comes from the station key, not the state directory"
    (blob,) = cache.glob("*.blob")
    blob.write_bytes(blob.read_bytes()[:-16] + bytes(16))
    (cache / "ledger.key").write_text("attacker")
    blobs = {blob.name: hashlib.sha256(blob.read_bytes()).hexdigest()}
    tag = hmac.new(b"attacker", json.dumps(blobs, sort_keys=True).encode(), hashlib.sha256).hexdigest()
    (cache / "ledger.json").write_text(json.dumps({"blobs": blobs, "mac": tag}))
    before = compile_cache.discarded()
    assert scores(AnomalyModel(bundle, "fp32", "CPU", cache)) == reference
    assert compile_cache.discarded() == before + 1


def test_a_blob_swapped_while_the_model_compiles_is_dropped_and_compiled_again(tiny_models, tmp_path, monkeypatch):
    """Found by the probe: a blob swapped after the check (during the compile) was loaded and then MAC'd by the
    station itself."""
    from edge_ad.inference import engine

    bundle, cache = load_bundle(tiny_models / "tiny"), tmp_path / "ov_cache"
    AnomalyModel(bundle, "fp32", "CPU", cache)
    (blob,) = cache.glob("*.blob")
    real, calls = engine.compile_pinned, []

    def swap_during_the_first_compile(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            blob.write_bytes(blob.read_bytes()[:-16] + bytes(16))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compile_pinned", swap_during_the_first_compile)
    before = compile_cache.discarded()
    AnomalyModel(bundle, "fp32", "CPU", cache)
    assert len(calls) == 2 and compile_cache.discarded() == before + 1
    recorded = json.loads((cache / "ledger.json").read_text())["blobs"]
    assert recorded[blob.name] == hashlib.sha256(blob.read_bytes()).hexdigest()  # the blob compiled again
