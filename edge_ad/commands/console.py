"""``edge-ad console`` (the technician console in the browser) and ``edge-ad console-user add|remove|list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_ad.errors import ConfigError

__all__ = ["add_parsers"]


def _config(path: Path):
    """The station config (relative paths resolved next to the file), once the console extra is known present."""
    from edge_ad.config import load_config
    from edge_ad.console import require_console

    require_console()
    return load_config(path)


def _cmd_console(args: argparse.Namespace) -> int:
    import logging

    config = _config(args.config)
    logging.getLogger().setLevel(args.log_level or config.service.log_level)
    from edge_ad.console.server import run_console

    return run_console(config)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ; nothing was changed")
    return first


def _cmd_user_add(args: argparse.Namespace) -> int:
    from edge_ad.console.app import users_file
    from edge_ad.console.users import add_user

    path = users_file(_config(args.config))
    new = add_user(path, args.name, _password(args), args.role)
    print(f"{'added' if new else 'changed'} {args.name} ({args.role}) in {path}")
    return 0


def _cmd_user_remove(args: argparse.Namespace) -> int:
    from edge_ad.console.app import users_file
    from edge_ad.console.users import remove_user

    path = users_file(_config(args.config))
    remove_user(path, args.name)
    print(f"removed {args.name} from {path}; their sessions end at their next request")
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    from edge_ad.console.app import users_file
    from edge_ad.console.users import list_users

    path = users_file(_config(args.config))
    users = list_users(path)
    if not users:
        print(f"no console users in {path}; add one with: edge-ad console-user add --config {args.config} NAME")
    for user in users:
        print(f"{user.name:24s} {user.role}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``console`` and ``console-user`` on the main parser."""
    p = sub.add_parser("console", help="serve the technician console in the browser (console extra)")
    p.add_argument("--config", required=True, type=Path, help="station YAML file")
    p.set_defaults(func=_cmd_console)

    p = sub.add_parser("console-user", help="add, remove or list console users (console extra)")
    users_sub = p.add_subparsers(dest="console_user_command", required=True)
    for name, func, helptext in (
        ("add", _cmd_user_add, "add a user, or set a new password and role"),
        ("remove", _cmd_user_remove, "remove a user"),
        ("list", _cmd_user_list, "users and their roles"),
    ):
        c = users_sub.add_parser(name, help=helptext)
        c.add_argument("--config", required=True, type=Path, help="station YAML file")
        if name != "list":
            c.add_argument("name", help="user name")
        if name == "add":
            c.add_argument("--role", choices=["viewer", "technician"], default="viewer", help="default viewer")
            c.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
        c.set_defaults(func=func)
