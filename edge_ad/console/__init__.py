"""Technician console in the browser: ``edge-ad console``, a process of its own (docs/console.md).

A fault in the console never stops verdicts: it only reads what the daemon publishes (retained MQTT
status and stats, the bundle store) and acts through the same functions the command line calls.
Installed with ``pip install 'edge_ad[console]'``. Importing this package needs nothing beyond the
base install; :mod:`.app`, :mod:`.server` and :mod:`.users` need the extra, so callers run
:func:`require_console` first.
"""

from __future__ import annotations

import importlib

from edge_ad.errors import ConfigError

__all__ = ["CONSOLE_MODULES", "require_console"]

# each a module name, or alternatives: python-multipart is imported as python_multipart since 0.0.13
CONSOLE_MODULES: tuple[tuple[str, ...], ...] = (
    ("fastapi",),
    ("uvicorn",),
    ("argon2",),
    ("python_multipart", "multipart"),
    ("itsdangerous",),
)


def require_console() -> None:
    """Fail early, with the install command, when a library of the ``console`` extra is missing.

    Raises:
        ConfigError: One of :data:`CONSOLE_MODULES` cannot be imported.
    """
    for names in CONSOLE_MODULES:
        for name in names:
            try:
                importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            raise ConfigError(
                f"the console needs the console extra ({names[0]} is missing); "
                "install it with: pip install 'edge_ad[console]'"
            )
