"""OPC UA server beside the MQTT topics: the ``Station`` object and its ``Trigger`` method (docs/integration.md).

Optional (``opcua.enabled``) and installed with ``pip install 'edge_ad[opcua]'`` (asyncua). Importing
this package, :mod:`.auth`, :mod:`.certs` and :mod:`.nodes` needs nothing beyond the base install;
:mod:`.server` needs asyncua, so the daemon imports it only when OPC UA is enabled, after
:func:`require_asyncua`.

The server runs on a thread of its own with its own asyncio loop. The daemon hands it values and
never waits for it; a server that cannot start (port in use, bad certificate) or a handler that
raises raises an alarm on the MQTT status, and verdicts go on.
"""

from __future__ import annotations

from edge_ad.errors import ConfigError

__all__ = ["ASYNCUA_BELOW", "ASYNCUA_MIN", "require_asyncua"]

ASYNCUA_MIN = (2, 1)
ASYNCUA_BELOW = (2, 2)  # calls.py patches asyncua's request processor: only the minor it was tested with


def require_asyncua() -> None:
    """Fail early, with the install command, when asyncua is missing or not the tested minor version.

    Raises:
        ConfigError: asyncua cannot be imported, or is older than :data:`ASYNCUA_MIN` or not older than
            :data:`ASYNCUA_BELOW` (``edge_ad.opcua.calls`` relies on its internals).
    """
    want = f"{'.'.join(map(str, ASYNCUA_MIN))},<{'.'.join(map(str, ASYNCUA_BELOW))}"
    try:
        from importlib.metadata import version

        import asyncua  # noqa: F401

        have = tuple(int(p) for p in version("asyncua").split(".")[:2])
    except Exception as exc:  # ImportError, PackageNotFoundError, a version string that is not numbers
        raise ConfigError(
            f"opcua.enabled needs asyncua >= {want} ({type(exc).__name__}: {exc}); "
            "install it with: pip install 'edge_ad[opcua]'"
        ) from None
    if not ASYNCUA_MIN <= have < ASYNCUA_BELOW:
        raise ConfigError(
            f"opcua.enabled needs asyncua >= {want} (installed: {'.'.join(map(str, have))}); "
            "install it with: pip install 'edge_ad[opcua]'"
        )
