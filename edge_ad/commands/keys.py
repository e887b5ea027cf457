"""``edge-ad keys new``: an Ed25519 key pair that signs bundles (workstation) or recalibrations (station)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers"]


def _cmd_new(args: argparse.Namespace) -> int:
    from edge_ad.bundle.signing import key_id, load_public_key, new_key_pair

    private, public = new_key_pair(args.dir, args.name)
    ident = key_id(load_public_key(public, "public key"))
    print(f"private  {private} (mode 0600: keep it on this machine; it signs with --sign-key or signing.key)")
    print(f"public   {public} (key id {ident})")
    print(f"next     copy {public.name} to every station and list it under security.trusted_keys in its config")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``keys`` on the main parser."""
    p = sub.add_parser("keys", help="signing keys for bundles")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    k = keys_sub.add_parser("new", help="make an Ed25519 key pair: NAME.key (private, 0600) and NAME.pub")
    k.add_argument("dir", type=Path, help="folder for the two files")
    k.add_argument("--name", default="edge-ad-signing", help="file name stem (default edge-ad-signing)")
    k.set_defaults(func=_cmd_new)
