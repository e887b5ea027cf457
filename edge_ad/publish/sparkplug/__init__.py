"""Sparkplug B 3.0 output: the station as an Edge Node with one device (docs/integration.md).

Optional (``sparkplug.enabled``) and installed with ``pip install 'edge_ad[sparkplug]'`` (protobuf).
Importing this package needs nothing beyond the base install; :mod:`.node` and :mod:`.payloads` need
protobuf, so the daemon imports them only when Sparkplug is enabled, after :func:`require_protobuf`.

``sparkplug_b.proto`` is Eclipse Tahu's ``sparkplug_b/sparkplug_b.proto`` (commit 5736e40, byte for
byte; EPL-2.0, see its header). ``sparkplug_b_pb2.py`` was generated from it, never edited, with
grpcio-tools 1.75.1 (protoc 31.1, so the runtime needs protobuf >= 6.31.1)::

    python -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.75.1
    cd edge_ad/publish/sparkplug && /tmp/gen/bin/python -m grpc_tools.protoc -I. --python_out=. sparkplug_b.proto

``tests/unit/publish/sparkplug/test_payloads.py`` checks that both files still match and decodes
what edge_ad sends with ``protoc --decode`` and with a wire-format decoder of its own.
"""

from __future__ import annotations

from edge_ad.errors import ConfigError

__all__ = ["require_protobuf"]


def require_protobuf() -> None:
    """Fail early, with the install command, when the protobuf runtime is missing or too old.

    Raises:
        ConfigError: protobuf cannot load the generated Sparkplug B classes.
    """
    try:
        from edge_ad.publish.sparkplug import sparkplug_b_pb2  # noqa: F401
    except Exception as exc:  # ImportError, or protobuf's VersionError for a runtime older than the gencode
        raise ConfigError(
            f"sparkplug.enabled needs protobuf >= 6.31.1 ({type(exc).__name__}: {exc}); "
            "install it with: pip install 'edge_ad[sparkplug]'"
        ) from None
