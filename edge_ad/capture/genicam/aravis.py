"""Importing Aravis through PyGObject, and its errors as one line."""

from __future__ import annotations

from types import ModuleType

from edge_ad.errors import CameraError

__all__ = ["INSTALL_HINT", "aravis", "describe_error"]

INSTALL_HINT = (
    "install the Debian package gir1.2-aravis-0.8 (scripts/setup.sh does) and the genicam extra: "
    "pip install 'edge_ad[genicam]'"
)


def aravis() -> ModuleType:
    """The ``Aravis`` 0.8 GObject module.

    Raises:
        CameraError: PyGObject or the Aravis typelib is missing (with the install command).
    """
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise CameraError(f"camera.source: genicam:// needs Aravis ({exc}); {INSTALL_HINT}") from None
    return Aravis


def describe_error(exc: BaseException) -> str:
    """A GLib error's message without the ``arv-...-quark:`` prefix and code; any other error as is."""
    message = getattr(exc, "message", None) or str(exc)
    return message.strip()
