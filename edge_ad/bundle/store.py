"""Find, verify and install bundles under a models directory.

Layout: ``<models>/<name>/<version>/{manifest.json, *.xml, *.bin, ...}`` plus an ``active``
symlink in ``<models>/<name>`` naming the version in service. Versions are integers.
A version directory appears by an atomic rename of a fully written, fsynced staging directory,
and ``active`` is swapped by renaming a new symlink over it: readers never see half a bundle.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge_ad.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    Variant,
    recalibration_root,
)
from edge_ad.errors import BundleError, EdgeAdError

__all__ = [
    "ACTIVE_LINK",
    "Bundle",
    "activate",
    "file_entry",
    "fsync_dir",
    "install_bundle",
    "list_versions",
    "load_bundle",
    "load_private",
    "next_version",
    "parse_manifest",
    "place_version",
    "private_copies",
    "read_optional",
    "read_regular",
    "resolve_version_dir",
]

ACTIVE_LINK = "active"
MAX_SIGNATURE = 64 * 1024
_REEXPORT = "re-copy the bundle or re-run 'edge-ad export'"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle version directory.

    ``raw`` is the manifest exactly as read and parsed: its signature is checked over these bytes,
    never over a second read of the file. ``origin`` is the version directory under ``models/`` a
    private copy was made from (:func:`load_private`); otherwise ``path`` itself.
    """

    path: Path
    manifest: Manifest
    raw: bytes = b""
    origin: Path | None = None

    @property
    def source(self) -> Path:
        """The version directory under ``models/`` (the private copy's origin, else ``path``)."""
        return self.origin or self.path

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


def open_regular(path: Path) -> int:
    """A file descriptor of ``path`` when it is a regular file (no FIFO, device or symlink to hang or swap on).

    Raises:
        BundleError: Missing, not a regular file, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        raise BundleError(f"{path}: cannot open ({exc.strerror}); {_REEXPORT}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{path}: not a regular file; {_REEXPORT}")
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a small regular file (at most ``limit``).

    Raises:
        BundleError: Missing, not a regular file, unreadable or larger than ``limit``.
    """
    with os.fdopen(open_regular(path), "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{path}: larger than {limit} bytes; {_REEXPORT}")
    return data


def read_optional(path: Path, limit: int) -> bytes | None:
    """:func:`read_regular` of a file that may be absent (None); anything present must be a small regular file."""
    if not path.exists() and not path.is_symlink():
        return None
    return read_regular(path, limit)


def file_entry(path: Path, copy_to: Path | None = None) -> FileEntry:
    """sha256 and size of a regular file, read in chunks (and written to ``copy_to`` as it is read)."""
    digest, size = hashlib.sha256(), 0
    copy = copy_to.open("xb") if copy_to else contextlib.nullcontext()
    with os.fdopen(open_regular(path), "rb") as fh, copy as out:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    return FileEntry(sha256=digest.hexdigest(), size=size)


def list_versions(model_dir: Path) -> list[Path]:
    """Version directories of a model directory, oldest first."""
    if not model_dir.is_dir():
        return []
    versions = [p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()]
    return sorted(versions, key=lambda p: int(p.name))


def resolve_version_dir(path: Path) -> Path:
    """Map a model directory to its active (or newest) version; a version directory maps to itself."""
    active = path / ACTIVE_LINK
    if (path / MANIFEST_NAME).is_file():
        if active.is_symlink() or list_versions(path):
            raise BundleError(
                f"{path / MANIFEST_NAME}: a manifest in a model directory (next to its versions) would pin "
                "a version and bypass 'active'; remove it"
            )
        return path
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


MAX_MANIFEST = 16 * 2**20


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle's manifest (once) and check every listed file's size and sha256.

    Args:
        path: A version directory or a model directory.
        verify: Hash every file (on by default; skip only for listing).

    Raises:
        BundleError: Missing directory or manifest, invalid manifest, missing or altered file.
    """
    version_dir = resolve_version_dir(Path(path))
    raw = read_regular(version_dir / MANIFEST_NAME, MAX_MANIFEST)
    manifest = parse_manifest(raw, version_dir / MANIFEST_NAME)
    if verify:
        for name, expected in manifest.files.items():
            _check_file(version_dir / name, expected)
    return Bundle(path=version_dir, manifest=manifest, raw=raw)


def parse_manifest(raw: bytes, where: Path) -> Manifest:
    """The manifest in ``raw`` (read from ``where``), with every file it uses listed.

    Raises:
        BundleError: Not a valid manifest.
    """
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{where}: invalid manifest at '{loc}': {first['msg']}; {_REEXPORT}") from None
    except ValueError as exc:
        raise BundleError(f"{where}: unreadable manifest ({exc}); {_REEXPORT}") from None
    for variant in manifest.variants.values():
        for name in (variant.xml, variant.bin):
            if name not in manifest.files:
                raise BundleError(f"{where}: {name} is used but not listed in 'files'; {_REEXPORT}")
    if manifest.acceptance is not None and manifest.acceptance.file not in manifest.files:
        raise BundleError(f"{where}: {manifest.acceptance.file} is used but not listed in 'files'; {_REEXPORT}")
    return manifest


def _check_file(file_path: Path, expected: FileEntry, copy_to: Path | None = None) -> None:
    if not file_path.is_file():
        raise BundleError(f"{file_path}: file listed in the manifest is missing; {_REEXPORT}")
    actual = file_entry(file_path, copy_to)
    if actual.size != expected.size:
        raise BundleError(
            f"{file_path}: size {actual.size} B, manifest says {expected.size} B (truncated or replaced); {_REEXPORT}"
        )
    if actual.sha256 != expected.sha256:
        raise BundleError(f"{file_path}: sha256 does not match manifest; {_REEXPORT}")


def load_private(path: str | Path, root: Path, keep: int = 4) -> Bundle:
    """Load a version from a private copy under ``root``: what is verified is what is loaded.

    Every listed file is copied as it is hashed (and the manifest and signature as they are read)
    into ``root/<name>-v<version>-<manifest sha>/``, a folder only this user can write; the model is
    compiled and judged from there. Whoever can write ``models/`` cannot swap a file between the
    check and its use. A copy made earlier is hashed again before use (disk damage); a new one was
    hashed as it was written. The ``keep`` most recently used copies are kept.

    Raises:
        BundleError: As :func:`load_bundle`, or the copy cannot be written (one line).
    """
    version_dir = resolve_version_dir(Path(path))
    raw = read_regular(version_dir / MANIFEST_NAME, MAX_MANIFEST)
    manifest = parse_manifest(raw, version_dir / MANIFEST_NAME)
    target = root / f"{manifest.name}-v{manifest.version}-{hashlib.sha256(raw).hexdigest()[:16]}"
    made = not target.is_dir()
    try:
        if made:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            part = root / f".{target.name}.part"
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(mode=0o700)
            (part / MANIFEST_NAME).write_bytes(raw)
            signature = read_optional(version_dir / SIGNATURE_NAME, MAX_SIGNATURE)
            if signature is not None:
                (part / SIGNATURE_NAME).write_bytes(signature)
            for name, expected in manifest.files.items():
                (part / name).parent.mkdir(parents=True, exist_ok=True)
                _check_file(version_dir / name, expected, copy_to=part / name)
            os.rename(part, target)
        os.utime(target)
        _forget_old(root, keep)
    except OSError as exc:
        raise BundleError(
            f"{root}: cannot keep a private copy of {version_dir} ({exc.strerror}); free space on service.state_dir"
        ) from None
    if not made:  # an earlier copy: judged by its own manifest and files, hashed again
        earlier = load_bundle(target)
        manifest, raw = earlier.manifest, earlier.raw
    return Bundle(path=target, manifest=manifest, raw=raw, origin=version_dir)


def private_copies(state_dir: Path) -> Path:
    """Where a station keeps the private copies of the versions it loads (:func:`load_private`)."""
    return state_dir / "bundles"


def _forget_old(root: Path, keep: int) -> None:
    copies = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=os.path.getmtime)
    for old in copies[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _readable_by_all(root: Path) -> None:
    """Folders 0755 and files 0644 below ``root`` (an installed version is read by the service user)."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


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
    version = next_version(model_dir)
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
    _readable_by_all(tmp_target)  # a staging folder from mkdtemp is 0700: the service user must read it
    _fsync_tree(tmp_target)
    os.rename(tmp_target, target)
    fsync_dir(model_dir)
    if make_active:
        activate(model_dir, version)
    return target


def place_version(staging: Path, model_dir: Path) -> Path:
    """Move a complete, verified version folder ``staging`` (in ``model_dir``) into place under its own number.

    For a signed version from elsewhere (an install offer): its manifest, and so its version number, stays
    byte for byte as signed, unlike :func:`install_bundle`. The folder is made readable by all and fsynced,
    then renamed: readers never see half a version, and an existing version folder is never replaced.

    Raises:
        OSError: The version already exists, or the disk failed.
    """
    manifest = parse_manifest(read_regular(staging / MANIFEST_NAME, MAX_MANIFEST), staging / MANIFEST_NAME)
    target = model_dir / manifest.version
    if target.exists() or target.is_symlink():  # rename would silently replace an empty folder
        raise FileExistsError(errno.EEXIST, "version already installed", str(target))
    _readable_by_all(staging)
    _fsync_tree(staging)
    os.rename(staging, target)
    fsync_dir(model_dir)
    return target


def next_version(model_dir: Path) -> str:
    """The version number the next install into ``model_dir`` gets."""
    existing = list_versions(model_dir)
    return str(int(existing[-1].name) + 1 if existing else 1)


def active_version(model_dir: Path) -> str | None:
    """Version the ``active`` link points at, or None."""
    link = model_dir / ACTIVE_LINK
    return os.readlink(link) if link.is_symlink() else None


def prune_versions(model_dir: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions, never the active one nor a kept one's root.

    A station-signed version is trusted through the exported version it was recalibrated from (its
    root, :func:`recalibration_root`), so that one stays.

    Returns:
        The versions removed.
    """
    active = active_version(model_dir)
    versions = list_versions(model_dir)
    kept = {p.name for p in versions[max(0, len(versions) - keep) :]} | ({active} if active else set())
    for name in list(kept):
        with contextlib.suppress(BundleError):
            root = recalibration_root(load_bundle(model_dir / name, verify=False).manifest)
            if root is not None:
                kept.add(root)
    removed = []
    for path in versions:
        if path.name in kept:
            continue
        doomed = model_dir / f".{path.name}.removing"
        os.rename(path, doomed)  # atomic: a half-deleted version never looks installed
        shutil.rmtree(doomed)
        removed.append(path.name)
    if removed:
        fsync_dir(model_dir)
    return removed


WRITER_LOCK = ".recalibrate.lock"  # its historical name: recalibrations took it first


@contextlib.contextmanager
def store_writer(root: Path, who: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the models root ``root`` for one writer (a recalibration, an install), across processes.

    Args:
        root: The models root (the folder holding ``<model>/<version>``).
        who: What wants it, for the error.
        wait_s: How long to wait for another writer to finish (0: refuse at once).

    Raises:
        EdgeAdError: Another writer holds it for longer than ``wait_s``.
    """
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(root / WRITER_LOCK, "w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EdgeAdError(
                        f"{who}: the model store {root} is being changed (a recalibration or an install); "
                        "wait for it and try again"
                    ) from None
                time.sleep(0.5)
        yield
