"""Ed25519 signatures of bundle manifests (``manifest.sig``), with the ``cryptography`` package.

The manifest lists the size and sha256 of every file of the bundle (IRs, memory bank, golden
images, acceptance set, report), so signing the manifest signs the bundle. What is signed is the
manifest's canonical JSON (keys sorted, no whitespace, UTF-8): re-indenting the file does not break
a signature, changing any value does. A key is named by its id: the first 16 hex digits of the
sha256 of its raw public bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_ad.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from edge_ad.bundle.store import MAX_SIGNATURE, read_optional
from edge_ad.errors import BundleError, ConfigError, first_line

__all__ = [
    "SIGNATURE_NAME",
    "Signature",
    "canonical_manifest",
    "key_id",
    "load_private_key",
    "load_public_key",
    "new_key_pair",
    "read_signature",
    "sign_manifest",
    "signature_valid",
]


class Signature(BaseModel):
    """``manifest.sig``: who signed the manifest, with which key, and the signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signer: str = Field(max_length=200, description="Who signed: 'export' (workstation) or 'station <name>'.")
    signed: str = Field(description="UTC time of signing (ISO 8601).")
    signature: str = Field(description="Base64 Ed25519 signature of the canonical manifest JSON.")


def key_id(public: Ed25519PublicKey) -> str:
    """The id of a public key: 16 hex digits of the sha256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (private, PEM, mode 0600) and ``name.pub`` (public, PEM) into ``directory``.

    Raises:
        ConfigError: A key of that name exists already (never overwritten).
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"keys: {path} exists; keys are never overwritten (choose another name or folder)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def _load_pem(path: Path, key: str, kind: type, what: str, parse) -> Any:
    """A PEM key of type ``kind`` from ``path`` with ``parse`` (one-line ConfigError naming ``key`` otherwise)."""
    try:
        loaded = parse(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: {path} is not {what} ({first_line(exc)})") from None
    if not isinstance(loaded, kind):
        raise ConfigError(f"{key}: {path} is not an Ed25519 key; make one with 'edge-ad keys new'")
    return loaded


def load_private_key(path: Path, key: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (``key`` names the setting in errors).

    Raises:
        ConfigError: Unreadable, not PEM, or not an Ed25519 key.
    """
    parse = partial(serialization.load_pem_private_key, password=None)
    return _load_pem(path, key, Ed25519PrivateKey, "an unencrypted PEM private key", parse)


def load_public_key(path: Path, key: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        ConfigError: Unreadable, not PEM, or not an Ed25519 key.
    """
    return _load_pem(path, key, Ed25519PublicKey, "a PEM public key", serialization.load_pem_public_key)


def canonical_manifest(raw: bytes) -> bytes:
    """The bytes a signature covers: the manifest's JSON (``raw``, as read once) with sorted keys, no whitespace.

    Raises:
        BundleError: Not JSON.
    """
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST_NAME}: not JSON ({exc})") from None
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_manifest(version_dir: Path, private: Ed25519PrivateKey, signer: str) -> Signature:
    """Sign ``version_dir``'s manifest and write ``manifest.sig`` next to it (atomically)."""
    signature = Signature(
        key_id=key_id(private.public_key()),
        signer=signer,
        signed=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        signature=base64.b64encode(
            private.sign(canonical_manifest((version_dir / MANIFEST_NAME).read_bytes()))
        ).decode(),
    )
    part = version_dir / f".{SIGNATURE_NAME}.part"
    part.write_text(signature.model_dump_json(indent=2) + "\n")
    os.replace(part, version_dir / SIGNATURE_NAME)
    return signature


def read_signature(version_dir: Path) -> Signature | None:
    """``manifest.sig`` of a version, or None when the version is not signed.

    Raises:
        BundleError: The file exists but is not a signature.
    """
    path = version_dir / SIGNATURE_NAME
    data = read_optional(path, MAX_SIGNATURE)
    if data is None:
        return None
    try:
        return Signature.model_validate_json(data)
    except ValidationError as exc:
        raise BundleError(f"{path}: not a valid signature file ({str(exc).splitlines()[0]})") from None


def signature_valid(raw: bytes, signature: Signature, public: Ed25519PublicKey) -> bool:
    """Whether ``signature`` is ``public``'s signature of the manifest ``raw`` (the bytes that were loaded)."""
    try:
        public.verify(base64.b64decode(signature.signature, validate=True), canonical_manifest(raw))
    except (InvalidSignature, ValueError):
        return False
    return True
