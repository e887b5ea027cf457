"""``edge-ad fleet status``: one line per station on a broker, from the retained status and stats (docs/fleet.md).

Exit codes: 0 every listed station is healthy (online, heard from, no alarm), 1 one is not (silent,
alarmed, camera offline, malformed) or none was found, 2 a usage or broker error. ``--watch`` redraws
until Ctrl-C and then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from edge_ad.commands.broker import add_broker_arguments, broker_config

if TYPE_CHECKING:
    from edge_ad.fleet.view import FleetView

__all__ = ["add_parsers"]

HEALTHY, UNHEALTHY = 0, 1
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen (only when stdout is a terminal)


def _show(args: argparse.Namespace, view: FleetView, now: float) -> int:
    from edge_ad.fleet.view import render_table, rows, select, to_json

    snapshot = view.snapshot()
    found = select(rows(snapshot, now, args.silent_after), args.stations)
    if args.json:
        print(to_json(found, snapshot, now), flush=True)
    else:
        silent = sum(r.silent for r in found)
        unhealthy = sum(not r.healthy for r in found)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        where = f"{view.mqtt.host}:{view.mqtt.port} {view.prefix}/+"
        print(f"fleet {where}  {stamp}  {len(found)} stations, {silent} silent, {unhealthy} not healthy")
        print(render_table(found, snapshot), flush=True)
    return HEALTHY if found and all(r.healthy for r in found) else UNHEALTHY


def _cmd_status(args: argparse.Namespace) -> int:
    from edge_ad.errors import BrokerError
    from edge_ad.fleet.view import FleetView

    logging.getLogger("edge_ad.publish.subscriber").setLevel(logging.ERROR)  # broker problems: the error or the header
    view = FleetView(broker_config(args))
    view.start()
    try:
        if not view.wait_ready(view.mqtt.connect_timeout_s):
            mqtt = view.mqtt
            raise BrokerError(view.error or f"mqtt: no answer from broker {mqtt.host}:{mqtt.port} in time")
        time.sleep(args.wait)  # retained messages arrive right after the subscription
        if args.watch is None:
            return _show(args, view, time.time())
        tty = sys.stdout.isatty() and not args.json
        while True:
            if tty:
                sys.stdout.write(CLEAR)
            elif not args.json:
                print()
            _show(args, view, time.time())
            time.sleep(args.watch)
    except KeyboardInterrupt:
        if args.watch is None:
            raise
        return HEALTHY  # Ctrl-C is how --watch ends
    finally:
        view.stop()


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def add_parsers(fleet_sub: argparse._SubParsersAction) -> None:
    """Register ``fleet status`` under ``edge-ad fleet``."""
    p = fleet_sub.add_parser(
        "status",
        help="one line per station on a broker: state, model, fps, p99, NG rate, drift, alarms; silent ones marked",
        description="Reads the retained <prefix>/+/status and <prefix>/+/stats of every station. Exit code 0 when "
        "every listed station is healthy, 1 when one is silent, alarmed or not online (or none is found), 2 on a "
        "usage or broker error: usable from cron or as a Nagios check.",
    )
    add_broker_arguments(p)
    p.add_argument(
        "--stations",
        action="append",
        metavar="PATTERN",
        help="only stations matching this fnmatch pattern, e.g. 'line3-*' (repeatable)",
    )
    p.add_argument("--wait", type=_not_negative, default=2.0, help="seconds to collect retained messages (default 2)")
    p.add_argument(
        "--watch",
        type=_positive,
        nargs="?",
        const=5.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default 5) until Ctrl-C; with --json one JSON document per line",
    )
    p.add_argument("--json", action="store_true", help="print the view as JSON (docs/fleet.md)")
    p.add_argument(
        "--silent-after",
        type=_positive,
        default=30.0,
        metavar="S",
        help="stats older than max(S, 3 x the measured stats interval) mark a station silent (default 30)",
    )
    p.set_defaults(func=_cmd_status)
