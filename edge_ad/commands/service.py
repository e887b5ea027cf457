"""Service commands: ``edge-ad install-service``, ``uninstall-service``, ``status`` and ``command``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parsers"]


def _cmd_install(args: argparse.Namespace) -> int:
    from edge_ad.service.install import edge_ad_command, install_service

    plan = install_service(args.station, args.root, args.bundle, enable=not args.no_enable, console=args.console)
    for path in plan.written:
        print(f"wrote    {path}")
    for path in plan.kept:
        print(f"kept     {path} (exists)")
    for command in plan.commands if plan.ran else []:
        print(f"ran      {' '.join(command)}")
    units = f"edge-ad@{args.station}" + (f" edge-ad-console@{args.station}" if args.console else "")
    if plan.start:
        print(f"started  {units} with its existing config")
    else:
        print(f"next     edit {args.root / 'etc/edge-ad' / (args.station + '.yaml')}, then "
              f"edge-ad config check --user edge-ad it and systemctl start {units} "
              "(not started: its config is the template)")  # fmt: skip
    if plan.console_url:  # as the service user: the console (User=edge-ad) reads the 0600 users file
        print(f"console  {plan.console_url} ; add a user first: sudo -u edge-ad {edge_ad_command()} console-user "
              f"add --config /etc/edge-ad/{args.station}.yaml NAME --role technician")  # fmt: skip
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


def _command_body(args: argparse.Namespace) -> dict:
    """The command ``edge-ad command NAME`` sends, from its options (one line naming what is missing)."""
    from urllib.parse import quote

    from edge_ad.errors import ConfigError

    if args.name == "install":
        from edge_ad.bundle.package import read_package

        if args.package is None or args.base_url is None:
            raise ConfigError("command install needs --package FILE (edge-ad models pack) and --base-url URL")
        package = read_package(args.package)
        return {
            "bundle": package.name,
            "version": package.version,
            "manifest_sha256": package.manifest_sha256,
            "url": f"{args.base_url.rstrip('/')}/{quote(package.path.name)}",
            "size": package.size,
            "activate": not args.no_activate,
        }
    if args.name == "rollback":
        if args.from_version is None:
            raise ConfigError("command rollback needs --from-version N (the active version it leaves)")
        return {"from_version": args.from_version}
    command = {"frames": args.frames, "interval_s": args.interval, "dry_run": args.dry_run}
    command |= {"refit_memory": True} if args.refit_memory else {}
    command |= {"defects_dir": str(args.defects_dir)} if args.defects_dir else {}
    return {k: v for k, v in command.items() if v is not None}


def _cmd_command(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config
    from edge_ad.service.command_client import send_command

    config = load_config(args.config or Path("/etc/edge-ad") / f"{args.station}.yaml")
    command = _command_body(args)
    timeout = args.timeout or (900.0 if args.name == "install" else 120.0)
    state = None
    for reply in send_command(config, args.name, command, timeout):
        state = reply.get("state")
        print(json.dumps(reply, sort_keys=True))
    if state is None:
        enabled = "recalibration.mqtt_command" if args.name == "recalibrate" else "fleet.accept_installs"
        print(f"edge-ad: error: no reply from station {config.station} within {timeout:.0f} s "
              f"(is the daemon running with {enabled}? a command signed with another key is "
              "answered at most once a minute: check commands.secret_file)", file=sys.stderr)  # fmt: skip
        return 2
    return {"passed": 0, "installed": 0, "rolled_back": 0, "failed": 4}.get(state, 2)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the service commands on the main parser."""
    p = sub.add_parser("install-service", help="install a station as a systemd service (config, units, user)")
    p.add_argument("station", help="station name (edge-ad@<station>, /etc/edge-ad/<station>.yaml)")
    p.add_argument("--root", type=Path, default=Path("/"), help="install below this directory (tests, images)")
    p.add_argument("--bundle", type=Path, help="model directory (models/<name>) to copy to /var/lib/edge-ad/models")
    p.add_argument("--no-enable", action="store_true", help="write files only; do not enable or start")
    p.add_argument(
        "--console", action="store_true", help="also enable the technician console, edge-ad-console@<station>"
    )
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("uninstall-service", help="stop and remove a station's service and console (config kept)")
    p.add_argument("station", help="station name")
    p.add_argument("--root", type=Path, default=Path("/"), help="uninstall below this directory (tests, images)")
    p.add_argument("--purge", action="store_true", help="also delete its config and state directory")
    p.set_defaults(func=_cmd_uninstall)

    p = sub.add_parser("status", help="one screen: camera, model, fps, NG rate, last error, drift")
    p.add_argument("station", nargs="?", help="station name (reads /etc/edge-ad/<station>.yaml)")
    p.add_argument("--config", type=Path, help="station YAML instead of /etc/edge-ad/<station>.yaml")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the retained messages")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("command", help="send a signed command to a running station and follow its replies")
    p.add_argument("name", choices=["recalibrate", "install", "rollback"], help="the command")
    p.add_argument("station", nargs="?", help="station name (reads /etc/edge-ad/<station>.yaml)")
    p.add_argument("--config", type=Path, help="station YAML (broker, station name and commands key)")
    p.add_argument("--frames", type=int, help="good frames the station collects (default: what acceptance needs)")
    p.add_argument("--interval", type=float, help="seconds between collected frames")
    p.add_argument("--dry-run", action="store_true", help="measure and report, change nothing")
    p.add_argument("--refit-memory", action="store_true", help="PatchCore: also rebuild the memory bank")
    p.add_argument("--defects-dir", type=Path, help="defect images, relative to recalibration.defects_root")
    p.add_argument("--package", type=Path, help="install: the package (edge-ad models pack) to offer")
    p.add_argument("--base-url", help="install: where the station downloads it (the folder's URL on a file server)")
    p.add_argument("--no-activate", action="store_true", help="install: commission only, do not activate")
    p.add_argument("--from-version", help="rollback: the active version it leaves")
    p.add_argument("--timeout", type=float, help="seconds to wait for each reply (default 120, install 900)")
    p.set_defaults(func=_cmd_command)
