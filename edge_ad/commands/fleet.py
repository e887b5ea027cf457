"""Plant commands: ``edge-ad fleet status|rollout`` (docs/fleet.md)."""

from __future__ import annotations

import argparse

from edge_ad.commands import fleet_rollout, fleet_status

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``fleet`` and its subcommands on the main parser."""
    p = sub.add_parser("fleet", help="many stations on one broker: status of all, staged rollouts")
    fleet_sub = p.add_subparsers(dest="fleet_command", required=True)
    fleet_status.add_parsers(fleet_sub)
    fleet_rollout.add_parsers(fleet_sub)
