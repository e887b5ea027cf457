"""``edge-ad fleet rollout``: a staged rollout of a bundle package (docs/fleet.md#staged-rollout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import quote

from edge_ad.commands.broker import add_broker_arguments, broker_config
from edge_ad.errors import EdgeAdError

__all__ = ["add_parsers"]


def _mqtt(args: argparse.Namespace):
    """(mqtt section, prefix, the config's command key or None) from --config or --broker and friends."""
    key = None
    if args.config is not None:
        from edge_ad.config import load_config
        from edge_ad.service.command_auth import command_key

        config = load_config(args.config)
        if config.commands.has_secret and args.keys is None and args.key is None:
            key = command_key(config.commands)
    elif not args.broker:
        raise EdgeAdError("fleet rollout: give --config station.yaml (its mqtt section) or --broker HOST[:PORT]")
    mqtt = broker_config(args)
    return mqtt, mqtt.prefix, key


def _options(args: argparse.Namespace, base=None):
    """The rollout options from the arguments (on --resume: the saved ones, durations overridable)."""
    from dataclasses import replace

    from edge_ad.fleet.rollout_plan import Options, parse_duration

    opts = base or Options(
        soak_all=args.soak_all,
        batch=args.batch or 10,
        max_ng_rate=args.max_ng_rate,
        allow_offline=args.allow_offline,
    )
    durations = {"soak_s": args.soak, "install_timeout_s": args.install_timeout}
    durations["rollback_timeout_s"] = args.rollback_timeout
    given = {k: parse_duration(v) for k, v in durations.items() if v is not None}
    if base is None:
        given = {"soak_s": 600.0, "install_timeout_s": 600.0, "rollback_timeout_s": 120.0} | given
    if args.batch is not None and args.batch < 1:
        raise EdgeAdError("--batch: give at least 1")
    if args.max_ng_rate is not None and not 0 <= args.max_ng_rate <= 1:
        raise EdgeAdError("--max-ng-rate: give a share between 0 and 1 (0.05 = 5 %)")
    return replace(opts, **given)


def _offer(bundle: Path, base_url: str | None) -> dict:
    """The install offer for package ``bundle`` served under ``base_url``."""
    from pydantic import ValidationError

    from edge_ad.bundle.package import read_package
    from edge_ad.publish.messages import InstallCommand

    if not base_url or not base_url.startswith(("http://", "https://")):
        raise EdgeAdError("--base-url: give the file server folder the package is copied to (http:// or https://)")
    package = read_package(bundle)
    offer = {"bundle": package.name, "version": package.version, "manifest_sha256": package.manifest_sha256,
             "url": f"{base_url.rstrip('/')}/{quote(package.path.name)}", "size": package.size}  # fmt: skip
    try:
        InstallCommand(id="check", **offer)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise EdgeAdError(f"{bundle}: cannot be offered ({error['loc'][0]}: {error['msg']})") from None
    return offer


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cmd_rollout(args: argparse.Namespace) -> int:
    from edge_ad.fleet.rollout import Runner, report
    from edge_ad.fleet.rollout_plan import Rollout, make_plan
    from edge_ad.fleet.rollout_transport import FleetLink, load_keys

    if sum(x is not None for x in (args.bundle, args.resume, args.abort)) != 1:
        raise EdgeAdError("fleet rollout: give a BUNDLE package, or --resume FILE, or --abort FILE (one of them)")
    if args.keys is not None and not args.keys.is_dir():
        raise EdgeAdError(f"--keys: {args.keys} is not a folder of <station>.key files")
    mqtt, prefix, config_key = _mqtt(args)
    saved = Rollout.load(args.resume or args.abort) if args.bundle is None else None
    if saved is None:
        offer = _offer(args.bundle, args.base_url)
        if not args.stations:
            raise EdgeAdError("--stations: give the stations to roll out to (a pattern such as 'line3-*')")
        options = _options(args)
    else:
        prefix = saved.prefix
    link = FleetLink(mqtt, prefix)
    try:
        link.settle()
        if saved is None:
            canaries = [c.strip() for c in args.canaries.split(",") if c.strip()] if args.canaries else None
            rollout = make_plan(offer, prefix, args.stations, dict(link.status), options, args.canary, canaries)
            rollout.path = args.state_dir / f"rollout-{rollout.id}.json"
            if rollout.path.exists():
                raise EdgeAdError(f"{rollout.path} exists: a rollout of this version started this second; retry")
        else:
            rollout = saved
            rollout.options = _options(args, rollout.options)
        stations = [r.station for r in rollout.stations if r.stage >= 0]
        if args.key is None and args.keys is None and config_key is not None:
            keys = dict.fromkeys(stations, config_key)
        else:
            keys = load_keys(stations, args.keys, args.key)
        if saved is None:
            args.state_dir.mkdir(parents=True, exist_ok=True)
            rollout.save()
            _log(f"rollout {rollout.id}: state in {rollout.path}")
        runner = Runner(rollout, link, keys, say=_log)
        if args.abort is not None:
            code = runner.abort()
        else:
            if args.resume is not None:
                runner.prepare_resume()
            try:
                code = runner.run()
            except KeyboardInterrupt:
                _log("interrupted: the state file says where it stopped; --resume or --abort it")
                code = 1
    finally:
        link.close()
    print(report(rollout))
    return code


def add_parsers(fleet_sub: argparse._SubParsersAction) -> None:
    """Register ``fleet rollout`` under ``edge-ad fleet``."""
    p = fleet_sub.add_parser(
        "rollout",
        help="install a signed bundle on many stations in stages: canaries, soak, then the rest (or resume/abort)",
        description="Exit 0: every station passed (or the abort rolled all back); 1: stopped on a failure, the "
        "failing stage rolled back; 2: usage or broker error.",
    )
    p.add_argument("bundle", nargs="?", type=Path, help="the package (edge-ad models pack) to roll out")
    p.add_argument("--base-url", help="http(s) folder of the file server the package is copied to; + its file name")
    p.add_argument("--stations", help="station names to roll out to, shell pattern(s): 'line3-*', 'cam1,cam2'")
    p.add_argument("--canary", type=int, default=1, help="how many canaries go first (the first N sorted; default 1)")
    p.add_argument("--canaries", help="the canaries by name, comma-separated (instead of --canary N)")
    p.add_argument("--soak", help="how long the canaries run before the rest: 10m, 30s, 1h (default 10m; 0: none)")
    p.add_argument("--soak-all", action="store_true", help="soak every batch of the rest too")
    p.add_argument("--batch", type=int, help="stations offered at once after the canaries (default 10)")
    p.add_argument(
        "--max-ng-rate", type=float, help="NG-rate bound during the soak (default max(0.05, 2 x the station's before))"
    )
    p.add_argument("--install-timeout", help="how long a station may take to install and activate (default 10m)")
    p.add_argument("--rollback-timeout", help="how long a rollback may take (default 2m)")
    p.add_argument("--allow-offline", action="store_true", help="skip matching stations that are not online")
    p.add_argument("--state-dir", type=Path, default=Path("."), help="where rollout-<id>.json is written (default .)")
    p.add_argument("--resume", type=Path, help="continue the stopped or interrupted rollout of this state file")
    p.add_argument("--abort", type=Path, help="roll back every station of this state file's rollout on its new version")
    p.add_argument("--keys", type=Path, help="folder of the stations' command keys, <station>.key (first line)")
    p.add_argument("--key", type=Path, help="one command key file for every station (first line)")
    add_broker_arguments(p, required=False)  # --config also gives the stations' commands key
    p.set_defaults(func=_cmd_rollout)
