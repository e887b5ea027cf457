"""OPC UA logins: user names with an scrypt hash or a password read like the MQTT password.

``python -m edge_ad.opcua.auth NAME`` asks for a password twice and prints the config lines with
its hash, so the password itself need not be stored on the station.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys

from edge_ad.config.opcua import OpcUaUser
from edge_ad.config.secrets import read_secret

__all__ = ["SCRYPT_N", "Logins", "hash_password", "main", "verify_password"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MB and a few tens of ms per check
MAX_PASSWORD_BYTES = 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64) of ``password``, with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time in the key)."""
    try:
        _, n, r, p, salt, key = encoded.split("$")
        expected = base64.b64decode(key, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


class Logins:
    """Who may log in, with every password source read once, now.

    Args:
        users: The ``opcua.users`` entries.

    Raises:
        ConfigError: A password file or variable cannot be read (names the key, never the secret).
    """

    def __init__(self, users: list[OpcUaUser]) -> None:
        self._hashes: dict[str, str] = {}
        self._plain: dict[str, bytes] = {}
        for i, user in enumerate(users):
            if user.password_hash is not None:
                self._hashes[user.name] = user.password_hash
            else:
                secret = read_secret(f"opcua.users[{i}].password", user.password_env, user.password_file) or ""
                self._plain[user.name] = hashlib.sha256(secret.encode()).digest()  # compared in constant time
        self._dummy = hash_password(secrets.token_hex(8))  # unknown names cost the same as known ones

    @property
    def names(self) -> list[str]:
        """The user names, sorted."""
        return sorted([*self._hashes, *self._plain])

    def check(self, name: str | None, password: str | None) -> bool:
        """Whether ``name`` may log in with ``password`` (False for unknown names, empty or oversized passwords)."""
        if not name or password is None or len(password.encode()) > MAX_PASSWORD_BYTES:
            return False
        if name in self._plain:
            return hmac.compare_digest(hashlib.sha256(password.encode()).digest(), self._plain[name])
        return verify_password(password, self._hashes.get(name, self._dummy)) and name in self._hashes


def main(argv: list[str] | None = None) -> int:
    """Print an ``opcua.users`` entry with the scrypt hash of a password typed twice (or read from stdin)."""
    parser = argparse.ArgumentParser(prog="python -m edge_ad.opcua.auth", description=main.__doc__)
    parser.add_argument("name", help="OPC UA user name")
    parser.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 2
    if not password:
        print("empty password", file=sys.stderr)
        return 2
    print(f"    - name: {args.name}\n      password_hash: '{hash_password(password)}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
