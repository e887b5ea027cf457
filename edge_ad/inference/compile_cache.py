"""OpenVINO's compiled-blob cache, trusted only as far as a ledger of blob hashes the station MACs.

OpenVINO loads any ``*.blob`` in ``CACHE_DIR`` whose name matches the model it compiles, and a
blob altered on disk is run as it is (a probe flipped 4 KiB in one: 8 of 45 scores changed, no
error). Around every compile this module drops each blob whose sha256 is not the one the ledger
recorded when the blob was written, so OpenVINO compiles from the signed IR again; after the
compile the ledger records the blobs present. The ledger is HMAC-SHA256'd with a key that only
the station's user can read: derived from the station's signing key (:mod:`edge_ad.integrity`), or
without one ``ledger.key`` (mode 0600, made on first use).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from edge_ad.bundle.store import file_entry
from edge_ad.errors import BundleError
from edge_ad.guard import RateLimitedLog
from edge_ad.integrity import mac, station_mac_key

__all__ = ["CacheChanged", "discarded", "verified_cache"]

logger = logging.getLogger(__name__)
LEDGER = "ledger.json"
KEY = "ledger.key"
_lock = threading.Lock()  # one compile at a time per process touches the ledger
_log = RateLimitedLog(logger, interval_s=3600)
_discarded = 0


def discarded() -> int:
    """Cached blobs dropped since the start because their hash was not in the ledger (stats)."""
    return _discarded


def _sha256(path: Path) -> str | None:
    """The blob's sha256 (the bundle store's chunked hash), or None when it is not a regular file."""
    try:
        return file_entry(path).sha256
    except BundleError:
        return None


def _key(folder: Path) -> bytes:
    station = station_mac_key()  # derived from the station's signing key: not in the state directory
    if station is not None:
        return station
    path = folder / KEY
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _mac(key: bytes, blobs: dict[str, str]) -> str:
    tag = mac(json.dumps(blobs, sort_keys=True).encode(), key)
    assert tag is not None
    return tag


def _ledger(folder: Path, key: bytes) -> dict[str, str]:
    """The recorded blob hashes, or nothing when the ledger is missing, unreadable or its MAC is wrong."""
    try:
        data = json.loads((folder / LEDGER).read_text())
        blobs = {str(k): str(v) for k, v in data["blobs"].items()}
        if hmac.compare_digest(_mac(key, blobs), str(data["mac"])):
            return blobs
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    _log.warning("mac", "compile cache: %s was changed outside the station; every cached blob is recompiled",
                 folder / LEDGER)  # fmt: skip
    return {}


@contextlib.contextmanager
def verified_cache(folder: Path) -> Iterator[None]:
    """Around one compile with ``CACHE_DIR=folder``: drop unrecorded or altered blobs, then record the blobs.

    Raises:
        CacheChanged: A blob that was verified before the compile changed during it (it was dropped).
    """
    with _lock:
        folder.mkdir(parents=True, exist_ok=True)
        key = _key(folder)
        recorded = _ledger(folder, key)
        trusted = {}
        for blob in sorted(folder.glob("*.blob")):
            digest = _sha256(blob)
            if digest is not None and recorded.get(blob.name) == digest:
                trusted[blob.name] = digest
            else:
                _drop(blob)
        yield
        changed = [folder / n for n, d in trusted.items() if (folder / n).exists() and _sha256(folder / n) != d]
        for blob in changed:  # swapped while OpenVINO compiled: it may have loaded it
            _drop(blob)
        digests = {blob.name: trusted.get(blob.name) or _sha256(blob) for blob in sorted(folder.glob("*.blob"))}
        blobs = {name: digest for name, digest in digests.items() if digest is not None}
        part = folder / f".{LEDGER}.part"
        try:
            part.write_text(json.dumps({"blobs": blobs, "mac": _mac(key, blobs)}, indent=1))
            os.replace(part, folder / LEDGER)
        except OSError as exc:  # the blobs are recompiled next time: slower, never wrong
            logger.warning("compile cache: cannot write %s (%s)", folder / LEDGER, exc.strerror)
        if changed:
            raise CacheChanged(f"{folder}: {changed[0].name} changed while the model compiled")


class CacheChanged(RuntimeError):
    """A trusted blob changed during a compile (someone else writes the cache): compile again."""


def _drop(blob: Path) -> None:
    global _discarded
    with contextlib.suppress(FileNotFoundError):
        blob.unlink()
    _discarded += 1
    _log.warning("blob", "compile cache: %s is not the blob the station wrote; recompiling from the signed IR "
                 "(%d so far)", blob, _discarded)  # fmt: skip
