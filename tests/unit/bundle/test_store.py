from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edge_ad.bundle import activate, list_versions, load_bundle
from edge_ad.errors import BundleError
from tests.support.tiny_bundle import make_tiny_bundle


@pytest.fixture
def models(tmp_path: Path) -> Path:
    make_tiny_bundle(tmp_path / "models", "tiny")
    return tmp_path / "models"


def test_model_dir_resolves_to_active_version(models):
    make_tiny_bundle(models, "tiny")
    assert [p.name for p in list_versions(models / "tiny")] == ["1", "2"]
    assert load_bundle(models / "tiny").manifest.version == "2"
    activate(models / "tiny", "1")
    assert load_bundle(models / "tiny").path.name == "1"
    assert load_bundle(models / "tiny" / "2").manifest.version == "2"


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="bundle not found; run 'edge-ad export'"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no manifest\.json and no bundle versions"):
        load_bundle(tmp_path / "empty")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda v: (v / "model.bin").write_bytes((v / "model.bin").read_bytes()[:-10]),
            r"model.bin: size .* \(truncated or replaced\)",
        ),
        (lambda v: _flip_byte(v / "model.xml"), "model.xml: sha256 does not match manifest"),
        (
            lambda v: (v / "memory_bank.npy").unlink(),
            "memory_bank.npy: file listed in the manifest is missing",
        ),
        (lambda v: (v / "manifest.json").write_text("{not json"), "manifest.json: invalid manifest"),
        (
            lambda v: _edit_manifest(v, threshold=float("nan")),
            "invalid manifest at 'variants.fp32.threshold.value'",
        ),
        (lambda v: _edit_manifest(v, extra_key=1), "invalid manifest at 'surprise'"),
    ],
)
def test_damaged_bundle_is_refused(models, damage, expected):
    version = models / "tiny" / "1"
    damage(version)
    with pytest.raises(BundleError, match=expected):
        load_bundle(models / "tiny")


def test_dangling_active_link(models):
    shutil.rmtree(models / "tiny" / "1")
    with pytest.raises(BundleError, match="'active' points to '1'"):
        load_bundle(models / "tiny")


def test_active_replaced_by_a_regular_file_is_one_clear_error(models):
    active = models / "tiny" / "active"
    active.unlink()
    active.write_text("1\n")  # a careless copy turned the link into a file: was an OSError traceback
    with pytest.raises(BundleError, match=r"'active' is not a link to a version; remove it and run"):
        load_bundle(models / "tiny")


def test_install_never_exposes_a_partial_version(models):
    # versions appear by rename; leftovers of an interrupted install are not versions
    (models / "tiny" / ".2.incoming").mkdir()
    assert [p.name for p in list_versions(models / "tiny")] == ["1"]
    assert os.readlink(models / "tiny" / "active") == "1"


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(version: Path, threshold: float | None = None, extra_key: int | None = None) -> None:
    path = version / "manifest.json"
    raw = json.loads(path.read_text())
    if threshold is not None:
        raw["variants"]["fp32"]["threshold"]["value"] = threshold
    if extra_key is not None:
        raw["surprise"] = extra_key
    path.write_text(json.dumps(raw))


def test_pruning_keeps_the_newest_and_always_the_active_version(tmp_path):
    from edge_ad.bundle.store import activate, list_versions, prune_versions
    from tests.support.tiny_bundle import make_tiny_bundle

    for _ in range(4):
        make_tiny_bundle(tmp_path)
    model_dir = tmp_path / "tiny"
    activate(model_dir, "1")
    assert prune_versions(model_dir, keep=2) == ["2"]
    assert [p.name for p in list_versions(model_dir)] == ["1", "3", "4"]
    assert not list(model_dir.glob(".*removing"))


def test_an_installed_version_is_readable_by_the_service_user_whoever_installed_it(tmp_path):
    """Found: a recalibration run as root installed its version with mode 0700 (its staging came from mkdtemp)."""
    import tempfile

    from edge_ad.bundle.store import install_bundle, load_bundle
    from tests.support.tiny_bundle import make_tiny_bundle

    source = load_bundle(make_tiny_bundle(tmp_path / "a"))
    staging = Path(tempfile.mkdtemp(dir=tmp_path))  # mode 0700, like recalibration's staging
    for name in source.manifest.files:
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes((source.path / name).read_bytes())
        (staging / name).chmod(0o600)
    installed = install_bundle(staging, tmp_path / "b", source.manifest)
    modes = {
        p.relative_to(installed).as_posix(): oct(p.stat().st_mode & 0o777) for p in [installed, *installed.rglob("*")]
    }
    assert modes.pop(".") == "0o755" and modes.pop("golden") == "0o755"
    assert set(modes.values()) == {"0o644"}, modes
