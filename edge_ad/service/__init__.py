"""The station daemon."""

from edge_ad.service.daemon import Daemon, run
from edge_ad.service.judge import judge

__all__ = ["Daemon", "judge", "run"]
