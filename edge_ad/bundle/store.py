"""Find, verify and install bundles under a models directory.

Layout: ``<models>/<name>/<version>/{manifest.json, *.xml, *.bin, ...}`` plus an ``active``
symlink in ``<models>/<name>`` naming the version in service. Versions are integers.
A version directory appears by an atomic rename of a fully written, fsynced staging directory,
and ``active`` is swapped by renaming a new symlink over it: readers never see half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge_ad.bundle.manifest import MANIFEST_NAME, FileEntry, Manifest, Variant
from edge_ad.errors import BundleError

__all__ = [
    "ACTIVE_LINK",
    "Bundle",
    "activate",
    "file_entry",
    "fsync_dir",
    "install_bundle",
    "list_versions",
    "load_bundle",
    "resolve_version_dir",
]

ACTIVE_LINK = "active"
_REEXPORT = "re-copy the bundle or re-run 'edge-ad export'"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle version directory."""

    path: Path
    manifest: Manifest

    def variant(self, ir: str) -> Variant:
        """The IR variant ``fp32`` or ``int8``; absent or rejected by the INT8 gate is an error."""
        found = self.manifest.variants.get(ir)  # type: ignore[call-overload]
        if found is None or found.status != "ok":
            why = "rejected by the INT8 gate" if found is not None else "not in the bundle"
            raise BundleError(f"{self.path}: variant '{ir}' {why}; run 'fp32' (model.variant) or re-export")
        return found

    def runnable(self) -> list[str]:
        """IR variants that passed export (``fp32`` first)."""
        return [name for name, v in self.manifest.variants.items() if v.status == "ok"]


def file_entry(path: Path) -> FileEntry:
    """sha256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return FileEntry(sha256=digest.hexdigest(), size=path.stat().st_size)


def list_versions(model_dir: Path) -> list[Path]:
    """Version directories of a model directory, oldest first."""
    if not model_dir.is_dir():
        return []
    versions = [p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()]
    return sorted(versions, key=lambda p: int(p.name))


def resolve_version_dir(path: Path) -> Path:
    """Map a model directory to its active (or newest) version; a version directory maps to itself."""
    if (path / MANIFEST_NAME).is_file():
        return path
    active = path / ACTIVE_LINK
    if active.is_symlink() or active.exists():
        if not active.is_symlink():
            raise BundleError(
                f"{active}: 'active' is not a link to a version; remove it and run 'edge-ad models activate VERSION'"
            )
        if not (active / MANIFEST_NAME).is_file():
            raise BundleError(
                f"{active}: 'active' points to {os.readlink(active)!r} which has no {MANIFEST_NAME}; "
                "activate an installed version or re-run 'edge-ad export'"
            )
        return active.resolve()
    versions = list_versions(path)
    if versions:
        return versions[-1]
    if path.exists():
        raise BundleError(
            f"{path}: no {MANIFEST_NAME} and no bundle versions inside; point model.path at "
            "models/<name> or models/<name>/<version> written by 'edge-ad export'"
        )
    raise BundleError(f"{path}: bundle not found; run 'edge-ad export' or fix model.path in the config")


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle's manifest and check every listed file's size and sha256.

    Args:
        path: A version directory or a model directory.
        verify: Hash every file (on by default; skip only for listing).

    Raises:
        BundleError: Missing directory or manifest, invalid manifest, missing or altered file.
    """
    version_dir = resolve_version_dir(Path(path))
    manifest_path = version_dir / MANIFEST_NAME
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{manifest_path}: invalid manifest at '{where}': {first['msg']}; {_REEXPORT}") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc}); {_REEXPORT}") from None
    for variant in manifest.variants.values():
        for name in (variant.xml, variant.bin):
            if name not in manifest.files:
                raise BundleError(f"{manifest_path}: {name} is used but not listed in 'files'; {_REEXPORT}")
    if manifest.acceptance is not None and manifest.acceptance.file not in manifest.files:
        raise BundleError(f"{manifest_path}: {manifest.acceptance.file} is used but not listed in 'files'; {_REEXPORT}")
    if verify:
        for name, expected in manifest.files.items():
            file_path = version_dir / name
            if not file_path.is_file():
                raise BundleError(f"{file_path}: file listed in the manifest is missing; {_REEXPORT}")
            actual = file_entry(file_path)
            if actual.size != expected.size:
                raise BundleError(
                    f"{file_path}: size {actual.size} B, manifest says {expected.size} B "
                    f"(truncated or replaced); {_REEXPORT}"
                )
            if actual.sha256 != expected.sha256:
                raise BundleError(f"{file_path}: sha256 does not match manifest; {_REEXPORT}")
    return Bundle(path=version_dir, manifest=manifest)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    """Make a rename or new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def activate(model_dir: Path, version: str) -> None:
    """Point ``model_dir/active`` at ``version`` atomically (new symlink renamed over the old)."""
    if not (model_dir / version / MANIFEST_NAME).is_file():
        raise BundleError(f"{model_dir / version}: not an installed bundle version")
    tmp = model_dir / f".{ACTIVE_LINK}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(version)
    os.replace(tmp, model_dir / ACTIVE_LINK)
    fsync_dir(model_dir)


def install_bundle(
    staging: Path,
    models_root: Path,
    manifest: Manifest,
    make_active: bool = True,
    sign: Callable[[Path], object] | None = None,
) -> Path:
    """Write the manifest into ``staging`` and move it into place as a new version.

    ``manifest.files`` must already describe the files in ``staging``; ``manifest.version`` is
    replaced by the next free integer version. ``sign`` (e.g. :func:`sign_manifest` with a key)
    is called on ``staging`` once the final manifest is written, so a version never appears unsigned.

    Returns:
        The installed version directory.
    """
    model_dir = models_root / manifest.name
    model_dir.mkdir(parents=True, exist_ok=True)
    existing = list_versions(model_dir)
    version = str(int(existing[-1].name) + 1 if existing else 1)
    manifest = manifest.model_copy(update={"version": version})
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    if sign is not None:
        sign(staging)
    _fsync_tree(staging)
    target = model_dir / version
    tmp_target = model_dir / f".{version}.incoming"
    if tmp_target.exists():
        shutil.rmtree(tmp_target)
    shutil.copytree(staging, tmp_target)
    _fsync_tree(tmp_target)
    os.rename(tmp_target, target)
    fsync_dir(model_dir)
    if make_active:
        activate(model_dir, version)
    return target


def active_version(model_dir: Path) -> str | None:
    """Version the ``active`` link points at, or None."""
    link = model_dir / ACTIVE_LINK
    return os.readlink(link) if link.is_symlink() else None


def prune_versions(model_dir: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions; the active one is never deleted.

    Returns:
        The versions removed.
    """
    active = active_version(model_dir)
    versions = list_versions(model_dir)
    removed = []
    for path in versions[: max(0, len(versions) - keep)]:
        if path.name == active:
            continue
        doomed = model_dir / f".{path.name}.removing"
        os.rename(path, doomed)  # atomic: a half-deleted version never looks installed
        shutil.rmtree(doomed)
        removed.append(path.name)
    if removed:
        fsync_dir(model_dir)
    return removed
