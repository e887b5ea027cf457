"""A bundle version as one file for a file server: ``<name>-<version>.tar`` (``edge-ad models pack``).

The tar holds exactly the version's files at its top level: ``manifest.json``, ``manifest.sig`` when
signed, and every file the manifest lists, nothing else. Unpacking is strict: a member that is not a
regular file, not listed, listed twice, bigger than the manifest says or outside the folder refuses
the whole package, so what lands on disk is what the manifest describes (the hashes and the
signature are then checked as for any installed version).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edge_ad.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from edge_ad.bundle.store import MAX_SIGNATURE, load_bundle, parse_manifest
from edge_ad.errors import BundleError

__all__ = ["PACKAGE_SUFFIX", "Package", "pack", "read_package", "unpack"]

PACKAGE_SUFFIX = ".tar"
MAX_MANIFEST_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Package:
    """What an install offer says about a package: its model, version, manifest hash and size."""

    path: Path
    name: str
    version: str
    manifest_sha256: str
    size: int


def pack(version_dir: Path, out: Path) -> Package:
    """Write ``version_dir`` (verified first) as ``<out>/<name>-<version>.tar``, or to ``out`` when it ends in .tar.

    Raises:
        BundleError: The version does not verify.
    """
    bundle = load_bundle(version_dir)
    m = bundle.manifest
    target = out if out.suffix == PACKAGE_SUFFIX else out / f"{m.name}-{m.version}{PACKAGE_SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True)
    names = [MANIFEST_NAME, *([SIGNATURE_NAME] if (bundle.path / SIGNATURE_NAME).is_file() else []), *m.files]
    part = target.with_name(f".{target.name}.part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tar.gettarinfo(str(bundle.path / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(bundle.path / name, "rb") as f:
                tar.addfile(info, f)
    part.replace(target)
    return read_package(target)


def _manifest_member(tar: tarfile.TarFile, where: Path) -> bytes:
    found = [m for m in tar.getmembers() if m.name == MANIFEST_NAME]
    if not found:
        raise BundleError(f"{where}: not a bundle package (no {MANIFEST_NAME}); make it with edge-ad models pack")
    if len(found) > 1:
        raise BundleError(f"{where}: {MANIFEST_NAME!r} is in the package twice")
    info = found[0]
    if not info.isreg() or info.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: {MANIFEST_NAME} is not a regular file of sane size")
    f = tar.extractfile(info)
    assert f is not None
    return f.read()


def read_package(path: Path) -> Package:
    """The offer's facts about package ``path`` (its manifest is read and validated, the files are not).

    Raises:
        BundleError: Not a readable bundle package.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            raw = _manifest_member(tar, path)
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{path}: not a readable bundle package ({exc})") from None
    manifest = parse_manifest(raw, path)
    return Package(
        path=path,
        name=manifest.name,
        version=manifest.version,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        size=path.stat().st_size,
    )


def unpack(path: Path, target: Path, manifest_sha256: str | None = None) -> Manifest:
    """Unpack package ``path`` into the new folder ``target`` (nothing but the manifest's files), strictly.

    Args:
        path: The downloaded package.
        target: A folder that must not exist yet (a staging folder on the same disk as the model store).
        manifest_sha256: The SHA-256 the offer announced for the manifest; a different one refuses the package.

    Raises:
        BundleError: Not a package, a manifest other than the announced one, or a member that is not one of
            the manifest's files as a plain regular file of at most its listed size. ``target`` may hold a
            partial copy then: the caller removes its staging folder.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            raw = _manifest_member(tar, path)
            if manifest_sha256 is not None and hashlib.sha256(raw).hexdigest() != manifest_sha256:
                raise BundleError(f"{path}: its manifest is not the one offered (SHA-256 differs); nothing installed")
            manifest = parse_manifest(raw, path)
            limits = {name: entry.size for name, entry in manifest.files.items()}
            limits[SIGNATURE_NAME] = MAX_SIGNATURE
            target.mkdir(parents=False)
            (target / MANIFEST_NAME).write_bytes(raw)
            seen: set[str] = set()
            for info in tar:
                if info.name == MANIFEST_NAME and MANIFEST_NAME not in seen:  # written above, from its bytes
                    seen.add(MANIFEST_NAME)
                    continue
                _check_member(info, limits, seen, path)
                seen.add(info.name)
                dest = target / info.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(info)
                assert source is not None
                with open(dest, "xb") as out:
                    _copy(source, out, info.size)
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{path}: could not unpack the bundle package ({exc})") from None
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise BundleError(f"{path}: the package lacks {missing[0]} (and {len(missing) - 1} more files)")
    return manifest


def _check_member(info: tarfile.TarInfo, limits: dict[str, int], seen: set[str], path: Path) -> None:
    name = info.name
    if name in seen:
        raise BundleError(f"{path}: {name!r} is in the package twice")
    if not info.isreg():
        raise BundleError(f"{path}: {name!r} is not a regular file (links and devices are refused)")
    if name not in limits:
        raise BundleError(f"{path}: {name!r} is not a file of the manifest")
    if info.size > limits[name]:
        raise BundleError(f"{path}: {name!r} is bigger than the manifest says")


def _copy(source: io.BufferedReader, out: io.BufferedWriter, size: int) -> None:
    left = size
    while left > 0:
        chunk = source.read(min(left, 1 << 20))
        if not chunk:
            break
        out.write(chunk)
        left -= len(chunk)
