"""The station daemon.

Imported lazily: tools that only need a light part of this package (the command client, the status reader)
do not load the daemon and its inference engine with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Daemon", "judge", "run"]


def __getattr__(name: str) -> Any:
    if name in ("Daemon", "run"):
        from edge_ad.service import daemon

        return getattr(daemon, name)
    if name == "judge":
        from edge_ad.service.judge import judge

        return judge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
