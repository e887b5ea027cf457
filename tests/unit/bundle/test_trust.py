"""Signed bundles: every tampering an attacker with write access to models/ could try is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_ad.bundle import MANIFEST_NAME, file_entry, load_bundle
from edge_ad.bundle.signing import SIGNATURE_NAME, key_id, new_key_pair, read_signature, sign_manifest
from edge_ad.bundle.trust import Trust
from edge_ad.config import SecurityConfig
from edge_ad.errors import BundleError
from edge_ad.inference.patchcore_graph import save_scoring_ir
from tests.support.tiny_bundle import make_tiny_bundle

WORKSTATION = Ed25519PrivateKey.generate()
STATION = Ed25519PrivateKey.generate()


def trust(**kwargs) -> Trust:
    return Trust(keys={key_id(WORKSTATION.public_key()): WORKSTATION.public_key()}, station=STATION, require=True,
                 **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> Path:
    """A models root with tiny v1 signed by the workstation key."""
    root = tmp_path_factory.mktemp("signed")
    make_tiny_bundle(root, sign=WORKSTATION)
    return root


@pytest.fixture
def models(signed, tmp_path) -> Path:
    shutil.copytree(signed, tmp_path / "models", symlinks=True)
    return tmp_path / "models" / "tiny"


def edit_manifest(version: Path, change) -> None:
    """Change the manifest as an attacker would (hashes recomputed where files changed)."""
    data = json.loads((version / MANIFEST_NAME).read_text())
    change(data)
    (version / MANIFEST_NAME).write_text(json.dumps(data, indent=2))


def recalibrated(models: Path, change=None, key: Ed25519PrivateKey = STATION) -> Path:
    """v2: a copy of v1 with a new threshold, signed by ``key`` (as on-device recalibration does)."""
    child = models / "2"
    shutil.copytree(models / "1", child)
    (child / SIGNATURE_NAME).unlink(missing_ok=True)

    def rethreshold(data: dict) -> None:
        data["version"], data["parent"] = "2", "1"
        data["variants"]["fp32"]["threshold"]["value"] = 1.5
        if change is not None:
            change(data)

    edit_manifest(child, rethreshold)
    sign_manifest(child, key, "station line1")
    return child


def refused(models_or_version: Path, **kwargs) -> str:
    with pytest.raises(BundleError) as info:
        trust(**kwargs).check(load_bundle(models_or_version))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_signed_bundle_is_trusted_and_says_by_whom(models):
    verdict = trust().check(load_bundle(models / "1"))
    assert verdict.describe() == f"signed by export (key {key_id(WORKSTATION.public_key())})"
    assert read_signature(models / "1").signer == "export"


def test_a_threshold_edit_is_refused(models):
    """Found: every threshold set to 1e6 in manifest.json, and NG dropped from 30 to 0 of 45 frames."""
    edit_manifest(models / "1", lambda d: d["variants"]["fp32"]["threshold"].update(value=1e6))
    load_bundle(models / "1")  # every file hash still matches: only the signature catches it
    assert "does not match manifest.json (changed after signing)" in refused(models / "1")


def test_a_swapped_ir_with_recomputed_hashes_is_refused(models):
    """Found: the INT8 IR copied over model.xml/.bin with recomputed sha256 values loaded as fp32."""
    version = models / "1"
    shutil.copy(version / "features.xml", version / "model.xml")
    shutil.copy(version / "features.bin", version / "model.bin")
    edit_manifest(version, lambda d: d["files"].update({n: file_entry(version / n).model_dump() for n in
                                                        ("model.xml", "model.bin")}))  # fmt: skip
    load_bundle(version)
    assert "does not match manifest.json" in refused(version)


def test_unsigned_and_unknown_key_are_refused_naming_file_and_key(models):
    stranger = Ed25519PrivateKey.generate()
    sign_manifest(models / "1", stranger, "someone")
    message = refused(models / "1")
    assert message.startswith(f"{models / '1' / SIGNATURE_NAME}: signed by key {key_id(stranger.public_key())}")
    assert "not in security.trusted_keys" in message
    (models / "1" / SIGNATURE_NAME).unlink()
    assert "is not signed and security.require_signature is on" in refused(models / "1")
    assert Trust().check(load_bundle(models / "1")).describe() == "not signed"  # no keys: runs as before


def test_a_replayed_old_version_is_refused_with_min_version(models):
    assert "older than security.min_version 2" in refused(models / "1", min_version=2)


def test_a_station_signed_recalibration_is_trusted_through_its_parent(models):
    verdict = trust().check(load_bundle(recalibrated(models)))
    assert verdict.chain == ("2", "1") and verdict.signer == "station line1"
    assert verdict.describe().endswith("via v1")


def test_a_station_signed_version_may_add_its_recalibration_report_but_not_other_files(models):
    child = recalibrated(models)
    (child / "report").mkdir()
    for name in ("recalibration.html", "report.html"):
        (child / "report" / name).write_text("<html></html>")

    def add(*names: str):
        def change(data: dict) -> None:
            data["files"].update({n: file_entry(child / n).model_dump() for n in names})

        return change

    edit_manifest(child, add("report/recalibration.html"))
    sign_manifest(child, STATION, "station line1")
    assert trust().check(load_bundle(child)).chain == ("2", "1")
    edit_manifest(child, add("report/report.html"))  # the export's report is the workstation's word
    sign_manifest(child, STATION, "station line1")
    assert "differs from v1 (signed by export) in report/report.html" in refused(child)


def test_a_station_signed_version_with_another_ir_is_refused(models):
    child = recalibrated(models)
    shutil.copy(child / "features.bin", child / "model.bin")

    def swap(data: dict) -> None:
        data["files"]["model.bin"] = file_entry(child / "model.bin").model_dump()

    edit_manifest(child, swap)
    sign_manifest(child, STATION, "station line1")  # a leaked station key cannot bring in another network
    assert "differs from v1 (signed by export) in model.bin" in refused(child)


def test_a_station_signed_version_without_a_signed_parent_is_refused(models):
    (models / "1" / SIGNATURE_NAME).unlink()
    child = recalibrated(models)
    assert "is not signed" in refused(child)


def test_a_memory_bank_refit_is_trusted_only_when_its_ir_is_rebuilt_from_the_parent(models, tmp_path):
    child = recalibrated(models)
    bank = np.load(child / "memory_bank.npy")[::2].copy()
    np.save(child / "memory_bank.npy", bank)
    save_scoring_ir(child / "features.xml", bank, {}, child / "model.xml")  # what a refit writes

    def refit(data: dict) -> None:
        data["files"].update({n: file_entry(child / n).model_dump() for n in ("memory_bank.npy", "model.xml",
                                                                                "model.bin")})  # fmt: skip

    edit_manifest(child, refit)
    sign_manifest(child, STATION, "station line1")
    assert trust().check(load_bundle(child)).chain == ("2", "1")
    np.save(child / "memory_bank.npy", bank[:-1])  # a bank that is not the one the IR was built from
    edit_manifest(child, lambda d: d["files"].update({"memory_bank.npy": file_entry(child / "memory_bank.npy")
                                                      .model_dump()}))  # fmt: skip
    sign_manifest(child, STATION, "station line1")
    assert "differs from v1 (signed by export) in model.bin, model.xml" in refused(child)


def test_keys_from_the_config(tmp_path):
    private, public = new_key_pair(tmp_path, "ws")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    loaded = Trust.from_config(SecurityConfig(trusted_keys=[public], station_key=private))
    assert loaded.require and list(loaded.keys) == [loaded.station_key_id]


def test_the_manifest_checked_is_the_manifest_loaded(models, tmp_path, monkeypatch):
    """Found by the probe: load_bundle parsed one manifest.json and the signature check read the file again;
    swapped back in between, a fake manifest (another IR, another threshold) ran as 'signed by export'."""
    from edge_ad.bundle import store

    version = models / "1"
    genuine = (version / MANIFEST_NAME).read_bytes()
    edit_manifest(version, lambda d: d["variants"]["fp32"]["threshold"].update(value=1e6))
    real_check = store._check_file

    def swap_back_after_the_first_file(*args, **kwargs):
        (version / MANIFEST_NAME).write_bytes(genuine)  # the attacker restores the genuine manifest
        return real_check(*args, **kwargs)

    monkeypatch.setattr(store, "_check_file", swap_back_after_the_first_file)
    bundle = store.load_private(version, tmp_path / "copies")
    assert bundle.manifest.variants["fp32"].threshold.value == 1e6 and bundle.path.parent == tmp_path / "copies"
    with pytest.raises(BundleError, match=r"does not match manifest\.json"):
        trust().check(bundle)


def test_files_are_loaded_from_the_copy_that_was_hashed(models, tmp_path, monkeypatch):
    """Found by the probe: files were hashed, then OpenVINO read them again from models/ (swapped meanwhile)."""
    from edge_ad.bundle import store

    bundle = store.load_private(models / "1", tmp_path / "copies")
    (models / "1" / "model.bin").write_bytes(b"\0" * 64)  # swapped after the check
    assert file_entry(bundle.path / "model.bin") == bundle.manifest.files["model.bin"]
    assert oct(bundle.path.stat().st_mode & 0o777) == "0o700" and bundle.source == models / "1"
    assert trust().check(bundle).signed


def test_a_signed_bundle_of_another_model_or_version_is_refused(models):
    """Found by the probe: a signed 'other' v1 copied to tiny/9 and activated judged as 'signed by export'."""
    shutil.copytree(models / "1", models / "9")
    assert "names tiny v1, not this folder (tiny/9)" in refused(models / "9")


def test_a_fifo_or_symlink_as_signature_is_refused_not_waited_on(models, tmp_path):
    """Found by the probe: a FIFO named manifest.sig hung the reloader (and the start) forever."""
    import os

    (models / "1" / SIGNATURE_NAME).unlink()
    os.mkfifo(models / "1" / SIGNATURE_NAME)
    assert "not a regular file" in refused(models / "1")
    (models / "1" / SIGNATURE_NAME).unlink()
    (models / "1" / SIGNATURE_NAME).symlink_to("/dev/zero")
    assert "cannot open" in refused(models / "1")


def test_a_manifest_in_the_model_directory_cannot_pin_a_version(models):
    shutil.copy(models / "1" / MANIFEST_NAME, models / MANIFEST_NAME)
    with pytest.raises(BundleError, match="a manifest in a model directory"):
        load_bundle(models)


def test_file_names_must_stay_inside_the_version(models):
    edit_manifest(models / "1", lambda d: d["files"].update({"../../etc/passwd": d["files"]["model.bin"]}))
    with pytest.raises(BundleError, match="not a plain relative path inside the version"):
        load_bundle(models / "1")


def test_pruning_keeps_the_root_a_kept_version_is_trusted_through(models):
    """Found by the probe: keep_versions 2 and two recalibrations pruned v1, and v2, v3 could not be trusted."""
    from edge_ad.bundle.store import activate, list_versions, prune_versions

    recalibrated(models)  # v2 from v1
    third = models / "3"
    shutil.copytree(models / "2", third)
    edit_manifest(third, lambda d: d.update(version="3", parent="2", recalibration={"root": "1"}))
    sign_manifest(third, STATION, "station line1")
    activate(models, "3")
    assert prune_versions(models, keep=1) == ["2"]
    assert [p.name for p in list_versions(models)] == ["1", "3"]
    assert trust().check(load_bundle(models / "3")).chain == ("3", "2", "1")


def test_a_station_signed_version_must_keep_every_setting_of_its_root(models):
    """Found by the probe: a recalibration signed a manifest whose input ROI an attacker had changed."""
    child = recalibrated(models, change=lambda d: d["input"].update(roi=[0, 0, 4, 4]))
    assert "differs from v1 (signed by export) in input" in refused(child)
