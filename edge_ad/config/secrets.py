"""Secrets (broker password, command key) from an environment variable or a file, never from the YAML itself.

A relative file name is looked up in systemd's ``$CREDENTIALS_DIRECTORY`` when the service runs with
``LoadCredential=`` (the loader resolves it against the config's folder otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_ad.errors import ConfigError

__all__ = ["read_secret"]


def read_secret(key: str, env: str | None, file: Path | None) -> str | None:
    """The secret from environment variable ``env`` or the first line of ``file`` (None with neither).

    Args:
        key: Config key prefix named in errors (e.g. ``mqtt.password``).
        env: Environment variable holding the secret (wins over ``file``).
        file: File whose first line is the secret.

    Raises:
        ConfigError: The variable is unset or the file unreadable.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{key}_env: environment variable {env} is not set")
        return value
    if file:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(credentials) / file if not file.is_absolute() and credentials else file
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{key}_file: cannot read {path} ({reason})") from None
        return lines[0] if lines else ""
    return None
