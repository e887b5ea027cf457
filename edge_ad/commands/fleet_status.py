"""``edge-ad fleet status``."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(fleet_sub: argparse._SubParsersAction) -> None:
    """Register ``fleet status`` under ``edge-ad fleet``."""
