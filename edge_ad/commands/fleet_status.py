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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_ad.config import MqttConfig
    from edge_ad.fleet.view import FleetView

__all__ = ["add_parsers", "broker_config", "parse_broker"]

HEALTHY, UNHEALTHY = 0, 1
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen (only when stdout is a terminal)
OPTIONS_OF_BROKER = {
    "--username": "username",
    "--password-file": "password_file",
    "--ca-file": "ca_file",
    "--cert-file": "cert_file",
    "--key-file": "key_file",
}


def parse_broker(text: str, tls: bool) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[v6addr]`` or ``[v6addr]:PORT``; the port defaults to 1883 (8883 with TLS).

    Raises:
        EdgeAdError: Not an address.
    """
    from edge_ad.errors import EdgeAdError

    default = 8883 if tls else 1883
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise EdgeAdError(f"--broker: {text!r} is not HOST[:PORT]")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise EdgeAdError(f"--broker: {text!r} names no host")
    if not port:
        return host, default
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EdgeAdError(f"--broker: port {port!r} is not 1..65535")
    return host, int(port)


def broker_config(args: argparse.Namespace) -> MqttConfig:
    """The ``MqttConfig`` to connect with: the station YAML's ``mqtt`` section, or one built from the options."""
    from pydantic import ValidationError

    from edge_ad.config import MqttConfig, load_config
    from edge_ad.config.loader import describe_errors
    from edge_ad.errors import EdgeAdError

    if args.config is not None:
        given = [o for o, v in OPTIONS_OF_BROKER.items() if getattr(args, v) is not None]
        if given:
            raise EdgeAdError(f"{', '.join(given)} go with --broker; --config takes the station's mqtt section")
        mqtt = load_config(args.config).mqtt
        fields = {**mqtt.model_dump(exclude_unset=True), "prefix": args.prefix or mqtt.prefix}
    else:
        fields = _broker_fields(args)
    try:
        return MqttConfig.model_validate(fields)
    except ValidationError as exc:
        raise EdgeAdError("; ".join(describe_errors(exc, MqttConfig))) from None


def _broker_fields(args: argparse.Namespace) -> dict[str, object]:
    from edge_ad.errors import EdgeAdError

    tls = args.ca_file is not None
    host, port = parse_broker(args.broker, tls)
    fields = {"host": host, "port": port, "prefix": args.prefix or "edge_ad", "connect_timeout_s": args.timeout}
    if args.username:
        fields["username"] = args.username
    if args.password_file:
        fields["password_file"] = str(args.password_file)
    if tls:
        fields["tls"] = {"ca": str(args.ca_file), "cert": args.cert_file, "key": args.key_file}
    elif args.cert_file or args.key_file:
        raise EdgeAdError("--cert-file/--key-file need --ca-file (TLS)")
    return fields


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
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="a station YAML: connect with its mqtt section (TLS, login)")
    where.add_argument("--broker", metavar="HOST[:PORT]", help="the broker (port 1883, 8883 with --ca-file)")
    p.add_argument("--username", help="broker user name (with --broker)")
    p.add_argument("--password-file", type=Path, help="file holding the broker password (first line)")
    p.add_argument("--ca-file", type=Path, help="TLS: CA certificate (PEM) of the broker; turns TLS on")
    p.add_argument("--cert-file", type=Path, help="TLS: client certificate (PEM), with --key-file")
    p.add_argument("--key-file", type=Path, help="TLS: private key (PEM) of the client certificate")
    p.add_argument("--prefix", help="first topic level (default: the config's mqtt.prefix, else edge_ad)")
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
    p.add_argument("--timeout", type=_positive, default=10.0, help="seconds to wait for the broker (with --broker)")
    p.set_defaults(func=_cmd_status)
