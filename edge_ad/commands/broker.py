"""Broker options of the plant tools (``edge-ad fleet status|rollout``): a station YAML or ``--broker`` and friends."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_ad.config import MqttConfig

__all__ = ["add_broker_arguments", "broker_config", "parse_broker"]

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


def add_broker_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config`` or ``--broker HOST[:PORT]`` (one; ``required``), login, TLS, ``--prefix`` and ``--timeout``."""
    where = p.add_mutually_exclusive_group(required=required)
    where.add_argument("--config", type=Path, help="a station YAML: connect with its mqtt section (TLS, login)")
    where.add_argument("--broker", metavar="HOST[:PORT]", help="the broker (port 1883, 8883 with --ca-file)")
    p.add_argument("--username", help="broker user name (with --broker)")
    p.add_argument("--password-file", type=Path, help="file holding the broker password (first line)")
    p.add_argument("--ca-file", type=Path, help="TLS: CA certificate (PEM) of the broker; turns TLS on")
    p.add_argument("--cert-file", type=Path, help="TLS: client certificate (PEM), with --key-file")
    p.add_argument("--key-file", type=Path, help="TLS: private key (PEM) of the client certificate")
    p.add_argument("--prefix", help="first topic level (default: the config's mqtt.prefix, else edge_ad)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (with --broker)")
