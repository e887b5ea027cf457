"""Console users: a JSON file of name -> argon2 hash and role, written atomically with mode 0600.

The file never holds a password, only its argon2id hash (argon2-cffi's ``PasswordHasher`` defaults,
RFC 9106 low-memory profile). Verifying an unknown name costs the same as a known one, so response
times do not tell which names exist.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge_ad.errors import ConfigError

__all__ = ["MIN_PASSWORD", "NAME_PATTERN", "ROLES", "User", "add_user", "list_users", "lookup", "remove_user", "verify"]

ROLES = ("viewer", "technician")  # in rising order of rights
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
MIN_PASSWORD = 8

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class User:
    """A console user: a name and a role (``viewer`` or ``technician``)."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this user has at least the rights of ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable console users file ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("hash"), str) and v.get("role") in ROLES for v in data.values()
    ):
        raise ConfigError(f"{path}: not a console users file (name -> {{hash, role}})")
    return data


def _write(path: Path, data: dict[str, dict[str, str]]) -> None:
    """Replace ``path`` atomically; the new file is 0600 before its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_user(path: Path, name: str, password: str, role: str) -> bool:
    """Add ``name`` with ``role``, or set a new password and role when it exists.

    Returns:
        Whether the user is new.

    Raises:
        ConfigError: A name, role or password that is not allowed.
    """
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise ConfigError(f"user name {name!r}: letters, digits, '_.@-', up to 64 characters")
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: choose from {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    data = _read(path)
    new = name not in data
    data[name] = {"hash": _hasher.hash(password), "role": role}
    _write(path, data)
    return new


def remove_user(path: Path, name: str) -> None:
    """Remove ``name``; its sessions end at their next request.

    Raises:
        ConfigError: No such user.
    """
    data = _read(path)
    if name not in data:
        raise ConfigError(f"{path}: no console user {name!r}")
    del data[name]
    _write(path, data)


def list_users(path: Path) -> list[User]:
    """Every user, sorted by name."""
    return [User(name, entry["role"]) for name, entry in sorted(_read(path).items())]


def lookup(path: Path, name: str) -> User | None:
    """The user ``name`` as the file says now (None when removed)."""
    entry = _read(path).get(name)
    return User(name, entry["role"]) if entry else None


def verify(path: Path, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (also for an unknown name, in the same time)."""
    data = _read(path)
    entry = data.get(name)
    try:
        _hasher.verify(entry["hash"] if entry else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if entry is None:
        return None
    if _hasher.check_needs_rehash(entry["hash"]):  # argon2-cffi raised its defaults: store the stronger hash
        data[name] = {**entry, "hash": _hasher.hash(password)}
        _write(path, data)
    return User(name, entry["role"])
