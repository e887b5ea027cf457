"""Bundle packages for file servers: what is unpacked is exactly what the manifest lists, or nothing is."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from edge_ad.bundle import load_bundle
from edge_ad.bundle.manifest import MANIFEST_NAME
from edge_ad.bundle.package import pack, read_package, unpack
from edge_ad.errors import BundleError
from tests.support.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_bundle(root, "tiny")
    return pack(root / "tiny" / "1", tmp_path_factory.mktemp("files")).path


def test_pack_and_unpack_give_the_same_verified_version(package, tmp_path):
    facts = read_package(package)
    assert package.name == "tiny-1.tar" and (facts.name, facts.version) == ("tiny", "1")
    with tarfile.open(package) as tar:
        raw = tar.extractfile(MANIFEST_NAME).read()
        assert all(m.isreg() and m.uid == 0 and m.mode == 0o644 for m in tar)
    assert facts.manifest_sha256 == hashlib.sha256(raw).hexdigest() and facts.size == package.stat().st_size
    manifest = unpack(package, tmp_path / "v", facts.manifest_sha256)
    assert load_bundle(tmp_path / "v").manifest == manifest  # every file's hash checked


def test_a_manifest_other_than_the_offered_one_is_refused(package, tmp_path):
    with pytest.raises(BundleError, match="not the one offered"):
        unpack(package, tmp_path / "v", "0" * 64)
    assert not (tmp_path / "v").exists()


def rewrite(package: Path, target: Path, extra: list[tarfile.TarInfo], drop: str | None = None) -> Path:
    with tarfile.open(package) as src, tarfile.open(target, "w") as out:
        for member in src:
            if member.name != drop:
                out.addfile(member, src.extractfile(member))
        for info in extra:
            out.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return target


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (member("../escape.txt"), "is not a file of the manifest"),
        (member("notes.txt"), "is not a file of the manifest"),
        (member("evil", tarfile.SYMTYPE, link="/etc/passwd"), "is not a regular file"),
        (member(MANIFEST_NAME, size=10), "twice"),
    ],
)
def test_members_the_manifest_does_not_list_refuse_the_package(package, tmp_path, extra, message):
    bad = rewrite(package, tmp_path / "bad.tar", [extra])
    with pytest.raises(BundleError, match=message):
        unpack(bad, tmp_path / "v")
    assert not (tmp_path / "escape.txt").exists()


def test_a_listed_file_bigger_than_listed_or_missing_refuses_the_package(package, tmp_path):
    name = next(iter(read_manifest_files(package)))
    bigger = tmp_path / "big.tar"
    with tarfile.open(package) as src, tarfile.open(bigger, "w") as out:
        for m in src:
            if m.name == name:
                out.addfile(member(name, size=m.size + 1), io.BytesIO(b"x" * (m.size + 1)))
            else:
                out.addfile(m, src.extractfile(m))
    with pytest.raises(BundleError, match="bigger than the manifest says"):
        unpack(bigger, tmp_path / "v1")
    missing = rewrite(package, tmp_path / "missing.tar", [], drop=name)
    with pytest.raises(BundleError, match="lacks"):
        unpack(missing, tmp_path / "v2")


def test_not_a_package_is_one_line(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BundleError, match="not a readable bundle package"):
        read_package(junk)


def read_manifest_files(package: Path) -> dict:
    with tarfile.open(package) as tar:
        return json.loads(tar.extractfile(MANIFEST_NAME).read())["files"]
