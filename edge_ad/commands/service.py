"""Service commands: ``edge-ad install-service``, ``uninstall-service`` and ``status``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers"]


def _cmd_install(args: argparse.Namespace) -> int:
    from edge_ad.service.install import install_service

    plan = install_service(args.station, args.root, args.bundle, enable=not args.no_enable)
    for path in plan.written:
        print(f"wrote    {path}")
    for path in plan.kept:
        print(f"kept     {path} (exists)")
    for command in plan.commands:
        print(f"ran      {' '.join(command)}")
    print(f"next     edit {args.root / 'etc/edge-ad' / (args.station + '.yaml')}, then "
          f"edge-ad config check it and systemctl restart edge-ad@{args.station}")  # fmt: skip
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from edge_ad.service.install import uninstall_service

    plan = uninstall_service(args.station, args.root, purge=args.purge)
    for path in plan.written:
        print(f"removed  {path}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config
    from edge_ad.service.status import read_station, render_status

    config = load_config(args.config or Path("/etc/edge-ad") / f"{args.station}.yaml")
    print(render_status(config, read_station(config, args.timeout)))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the service commands on the main parser."""
    p = sub.add_parser("install-service", help="install a station as a systemd service (config, units, user)")
    p.add_argument("station")
    p.add_argument("--root", type=Path, default=Path("/"), help="install below this directory (tests, images)")
    p.add_argument("--bundle", type=Path, help="model directory (models/<name>) to copy to /var/lib/edge-ad/models")
    p.add_argument("--no-enable", action="store_true", help="write files only; do not enable or start")
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("uninstall-service", help="stop and remove a station's service (config kept)")
    p.add_argument("station")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--purge", action="store_true", help="also delete its config and state directory")
    p.set_defaults(func=_cmd_uninstall)

    p = sub.add_parser("status", help="one screen: camera, model, fps, NG rate, last error, drift")
    p.add_argument("station", nargs="?", help="station name (reads /etc/edge-ad/<station>.yaml)")
    p.add_argument("--config", type=Path, help="station YAML instead of /etc/edge-ad/<station>.yaml")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the retained messages")
    p.set_defaults(func=_cmd_status)
