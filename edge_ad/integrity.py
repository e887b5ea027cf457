"""An HMAC, keyed by the station's own signing key, on what the station writes and trusts later.

The compile-cache ledger and the commissioning records carry it (key derived from ``security.station_key``).

Whoever can write the state directory but not read the station key cannot forge them: a blob or a
record that does not verify is ignored (recompiled, re-commissioned). Without a station key, the
compile cache falls back to a key file next to it and records are not MAC'd (as before signing).
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["mac", "mac_matches", "station_mac_key", "use_station_key"]

_lock = threading.Lock()
_key: bytes | None = None


def use_station_key(private: Ed25519PrivateKey | None) -> None:
    """Derive this process's MAC key from the station's signing key (None: no station key)."""
    global _key
    raw = None
    if private is not None:
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    with _lock:
        _key = None if raw is None else hashlib.sha256(b"edge-ad station integrity\0" + raw).digest()


def station_mac_key() -> bytes | None:
    """The MAC key derived from the station key, or None."""
    with _lock:
        return _key


def mac(data: bytes, key: bytes | None = None) -> str | None:
    """HMAC-SHA256 of ``data`` (hex) with ``key`` or the station's; None without either."""
    key = key or station_mac_key()
    return None if key is None else hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_matches(data: bytes, tag: str | None, key: bytes | None = None) -> bool:
    """Whether ``tag`` is the MAC of ``data`` (always true without a key: nothing to check with)."""
    expected = mac(data, key)
    return expected is None or (tag is not None and hmac.compare_digest(expected, tag))
