"""Technician commands: ``edge-ad recalibrate`` and ``edge-ad models list|activate|rollback|verify|commission|pack``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_ad.errors import BundleError, EdgeAdError

__all__ = ["add_parsers"]

RECALIBRATION_FAILED = 4


class _Bar:
    """A one-line progress bar on stderr (the runtime install has no tqdm)."""

    def __init__(self, totals: dict[str, int]) -> None:
        self.totals = totals
        self.stage = ""
        self.tty = sys.stderr.isatty()

    def __call__(self, stage: str, done: int) -> None:
        total = next((n for key, n in self.totals.items() if stage.startswith(key)), 0)
        if stage != self.stage and self.stage and self.tty:
            sys.stderr.write("\n")
        self.stage = stage
        if not self.tty and done != total:  # logs and journald get one line per finished stage
            return
        filled = int(30 * done / total) if total else 30
        end = "" if self.tty else "\n"
        sys.stderr.write(f"\r{stage:22s} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total or '?'}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.stage and self.tty:
            sys.stderr.write("\n")


def _frames(args: argparse.Namespace, config, bar: _Bar):
    from edge_ad.calibrate.frames import frames_from_camera, frames_from_folder

    if args.images is not None:
        return frames_from_folder(args.images), f"images:{args.images.resolve()}"
    return (
        frames_from_camera(config.camera, args.from_camera, args.interval, progress=bar),
        f"camera:{config.camera.source}",
    )


def _cmd_recalibrate(args: argparse.Namespace) -> int:
    from edge_ad.calibrate.frames import frames_from_folder
    from edge_ad.calibrate.recalibrate import recalibrate, require_frames
    from edge_ad.config import load_config

    config = load_config(args.config)
    if args.from_camera is not None:  # before minutes of capturing, not after
        require_frames(args.from_camera, config.recalibration)
    bar = _Bar({"capture": args.from_camera or 0})
    good, source = _frames(args, config, bar)
    defects = frames_from_folder(args.defects, "--defects") if args.defects else None
    every = config.recalibration.holdback_every
    held = len(good) // every
    fit = len(good) - held
    bar.totals.update({"features": fit, "threshold": fit, "held-back": held, "defects": len(defects or [])})
    try:
        outcome = recalibrate(
            config,
            good,
            defects,
            refit_memory=args.refit_memory,
            dry_run=args.dry_run,
            progress=bar,
            source=source,
            parts_checked=args.parts_checked,  # this run only: remote commands never pass it
        )
    finally:
        bar.close()
    _summary(outcome, args.dry_run)
    return 0 if outcome.passed else RECALIBRATION_FAILED


def _summary(o, dry_run: bool) -> None:
    kind = "threshold + memory bank" if o.refit_memory else "threshold only"
    print(f"recalibration  {kind}, new version runs {o.variant} here, method {o.method}, frames {o.frames}")
    print(f"threshold      {o.old_threshold:.6g} -> {o.new_threshold:.6g}")
    print(
        f"false rejects  {o.old_false_reject:.1%} -> {o.false_reject:.1%} on held-back good frames "
        f"(target <= {o.target_false_reject:.1%})"
    )
    if o.recall is not None:
        print(f"recall         {o.old_recall:.1%} -> {o.recall:.1%} on defect frames (must not fall)")
    if o.known:
        k = o.known
        print(f"bundle's own   recall {k['recall_old']:.1%} -> {k['recall_new']:.1%} on its {k['defects']} defect "
              f"images, false rejects {k['false_reject_old']:.1%} -> {k['false_reject_new']:.1%} on its {k['good']} "
              "good images")  # fmt: skip
    for name, c in o.checks.items():
        recall = "" if c.recall is None else f", recall {c.old_recall:.1%} -> {c.recall:.1%}"
        print(f"  {name:12s} false rejects {c.old_false_reject:.1%} -> {c.false_reject:.1%}{recall}")
    for name, why in o.refused.items():
        print(f"not run        {name}: {'; '.join(why)} (the new version runs {o.variant} here)")
    print(f"histogram      {o.histogram}")
    print(f"report         {o.report}")
    if not o.passed:
        print(f"FAIL           {'; '.join(o.reasons)} - nothing was changed")
    elif dry_run:
        print("PASS (dry run) nothing was changed")
    else:
        print(f"PASS           installed and activated {o.installed} (parent version {o.parent})")


def _model_dir(args: argparse.Namespace) -> Path:
    from edge_ad.bundle.store import MANIFEST_NAME

    if args.models is not None:
        path = args.models
    else:
        from edge_ad.config import load_config

        path = load_config(args.config).model.path
    if (path / MANIFEST_NAME).is_file():
        path = path.parent  # a version directory: manage its model directory
    if not path.is_dir():
        raise BundleError(f"{path}: no such model directory; check model.path or --models")
    return path


def _station(args: argparse.Namespace):
    """(model section, state directory) of ``--config``; ``--models`` alone knows no station (None, None)."""
    if args.config is None:
        return None, None
    from edge_ad.config import load_config

    config = load_config(args.config)
    return config.model, config.service.state_dir


def _trust(args: argparse.Namespace):
    """The station's trust policy with ``--config``; with ``--models`` alone, signatures are shown, not verified."""
    from edge_ad.bundle.trust import Trust
    from edge_ad.config import load_config

    return Trust.from_config(load_config(args.config).security) if args.config is not None else None


def _signed_by(path: Path, trust) -> str:
    """Who signed a version: verified against the station's keys when known, else as the file says."""
    from edge_ad.bundle.signing import read_signature
    from edge_ad.bundle.store import load_bundle

    try:
        if trust is not None:
            return trust.check(load_bundle(path)).describe()
        signature = read_signature(path)
    except EdgeAdError as exc:
        return f"REFUSED: {str(exc).removeprefix(str(path)).lstrip(': /')}"
    return "not signed" if signature is None else f"signed by {signature.signer} (key {signature.key_id}, not verified)"


def _cmd_models_list(args: argparse.Namespace) -> int:
    from edge_ad.bundle.store import active_version, list_versions, load_bundle
    from edge_ad.commissioning import resolve_variant
    from edge_ad.inference.precision import RUN_VARIANTS

    model_dir = _model_dir(args)
    model_config, state_dir = _station(args)
    trust = _trust(args)
    active = active_version(model_dir)
    rows = []
    for path in list_versions(model_dir):
        try:
            bundle = load_bundle(path, verify=False)
            m = bundle.manifest
            runs, precision = "-", ""
            if model_config is not None:  # what this station runs for that version (never measured here)
                resolution = resolve_variant(bundle, model_config, state_dir, commission_missing=False)
                if resolution.record is not None:
                    runs = resolution.variant
                    precision = resolution.record.candidates[runs].precision
            ir = RUN_VARIANTS[runs].ir if runs in RUN_VARIANTS else m.default_variant
            note = f"recalibrated from v{m.parent}" if m.parent else "exported"
            if m.acceptance is None:
                note += ", no acceptance set (fp32 only)"
            note += f", {_signed_by(path, trust)}"
            rows.append((path.name, m.created, m.model.type, runs, precision, m.variants[ir].threshold.value, note))  # type: ignore[index]
        except EdgeAdError as exc:
            rows.append((path.name, "", "", "", "", float("nan"), f"BROKEN: {exc}"))
    if args.json:
        keys = ("version", "created", "type", "runs", "precision", "threshold", "note")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows]))
        return 0
    print(f"{model_dir}   (runs: the variant commissioned on this device; '-': not commissioned here yet)")
    for version, created, kind, runs, precision, threshold, note in rows:
        mark = "*" if version == active else " "
        ran = f"{runs} {precision}".strip()
        print(f"{mark} v{version:<4} {created:25s} {kind:10s} runs {ran:10s} threshold {threshold:<10.5g} {note}")
    return 0


def _cmd_models_commission(args: argparse.Namespace) -> int:
    from edge_ad.bundle.store import load_bundle, resolve_version_dir
    from edge_ad.commissioning import resolve_variant
    from edge_ad.commissioning.record import record_path
    from edge_ad.config.loader import writable_dir
    from edge_ad.integrity import use_station_key

    model_config, state_dir = _station(args)
    trust = _trust(args)
    use_station_key(trust.station if trust is not None else None)  # records MAC'd as the daemon expects them
    model_dir = _model_dir(args)
    target = model_dir / args.version if args.version else resolve_version_dir(model_config.path)
    bundle = load_bundle(target)
    writable_dir(state_dir / "commissioning", "service.state_dir")  # before minutes of measuring, not after
    resolution = resolve_variant(bundle, model_config, state_dir, force=True, context="edge-ad models commission")
    record = resolution.record
    assert record is not None
    key = record.key
    print(f"bundle     {key.bundle}  ({bundle.path})")
    print(f"device     {key.device} ({key.device_name}), OpenVINO {key.openvino}")
    print(f"cpu flags  {' '.join(key.cpu_flags) or 'none of note'}; unasked, OpenVINO would run "
          f"{record.plugin_default_precision}")  # fmt: skip
    if record.acceptance:
        a = record.acceptance
        print(f"acceptance {a['images']} images ({a['good']} good, {a['defects']} defects), FP32 AUROC "
              f"{float(a['fp32_auroc']):.4f}, budget {float(a['max_auroc_drop']):.4f}")  # fmt: skip
    print(f"{'variant':8s} {'precision':9s} {'accepted':8s} {'agree':>7s} {'AUROC drop':>10s} {'drift max':>9s} "
          f"{'p50 ms':>7s}  why not")  # fmt: skip
    for name, c in record.candidates.items():
        agree = "-" if c.agreement is None else f"{c.agreement:.1%}"
        drop = "-" if c.auroc_drop is None else f"{c.auroc_drop:+.4f}"
        drift = "-" if c.drift_max is None else f"{c.drift_max:.2%}"
        p50 = "-" if c.p50_ms is None else f"{c.p50_ms:.2f}"
        print(f"{name:8s} {c.precision:9s} {'yes' if c.accepted else 'NO':8s} {agree:>7s} {drop:>10s} {drift:>9s} "
              f"{p50:>7s}  {'; '.join(c.reasons)}")  # fmt: skip
    print(f"auto runs  {record.chosen}: {record.reason}")
    print(f"this station (model.variant {model_config.variant}) runs {resolution.variant}"
          + (f" - {resolution.note}" if resolution.note else ""))  # fmt: skip
    print(f"record     {record_path(state_dir, key.manifest_sha256, key.device)}; a running daemon uses it after "
          "'systemctl reload edge-ad@<station>' (SIGHUP)")  # fmt: skip
    return 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from edge_ad.bundle.signing import SIGNATURE_NAME, read_signature
    from edge_ad.bundle.store import active_version, file_entry, load_bundle

    model_dir = _model_dir(args)
    trust = _trust(args)
    version = args.version or active_version(model_dir)
    if version is None:
        raise BundleError(f"{model_dir}: no active version; name one: edge-ad models verify VERSION")
    bad = 0
    while version is not None:
        path = model_dir / version
        bundle = load_bundle(path, verify=False)
        m = bundle.manifest
        print(f"v{version}  {m.name}  created {m.created}" + (f"  recalibrated from v{m.parent}" if m.parent else ""))
        for name, expected in m.files.items():
            actual = file_entry(path / name) if (path / name).is_file() else None
            ok = actual == expected
            bad += not ok
            state = "ok " if ok else ("MISSING" if actual is None else "CHANGED")
            print(f"  {state:7s} {expected.sha256[:16]}  {expected.size:>10d} B  {name}")
        signature = read_signature(path)
        if signature is None:
            print(f"  {SIGNATURE_NAME}: none (not signed)")
        else:
            print(f"  {SIGNATURE_NAME}: {signature.signer}, key {signature.key_id}, signed {signature.signed}")
        verdict = _signed_by(path, trust)
        bad += verdict.startswith("REFUSED")
        print(f"  trust    {verdict if trust is not None else verdict + ' (give --config to verify)'}")
        version = m.parent if args.chain and m.parent and (model_dir / m.parent).is_dir() else None
    if bad:
        print(f"FAIL: {bad} problem(s); the station refuses this version", file=sys.stderr)
        return 2
    print("OK")
    return 0


def _cmd_models_activate(args: argparse.Namespace) -> int:
    from edge_ad.bundle.activation import activate_checked

    model_dir = _model_dir(args)
    activate_checked(model_dir, args.version, _trust(args))  # every file, and the signature as the station will
    print(f"active -> v{args.version} ({model_dir}); a running daemon switches within seconds")
    return 0


def _cmd_models_rollback(args: argparse.Namespace) -> int:
    from edge_ad.bundle.activation import activate_checked, rollback_target

    model_dir = _model_dir(args)
    active, target = rollback_target(model_dir)
    activate_checked(model_dir, target, _trust(args))
    print(f"rolled back: active v{active} -> v{target} ({model_dir})")
    return 0


def _cmd_models_pack(args: argparse.Namespace) -> int:
    from edge_ad.bundle.package import pack

    package = pack(args.version_dir, args.out)  # verified first: a broken version is never packed
    print(f"package          {package.path}")
    print(f"bundle           {package.name} v{package.version}")
    print(f"manifest_sha256  {package.manifest_sha256}")
    print(f"size             {package.size}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``recalibrate`` and ``models`` on the main parser."""
    p = sub.add_parser("recalibrate", help="re-teach 'good' on the device from fresh frames (no torch)")
    p.add_argument("--config", required=True, type=Path, help="station YAML file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-camera", type=int, metavar="N", help="capture N good frames from the station's camera")
    src.add_argument("--images", type=Path, help="folder of fresh good images")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between captured frames")
    p.add_argument("--defects", type=Path, help="folder of defect images (enables f1 and the recall check)")
    p.add_argument("--refit-memory", action="store_true", help="PatchCore: rebuild the memory bank too")
    p.add_argument("--dry-run", action="store_true", help="measure and report, change nothing")
    p.add_argument("--parts-checked", action="store_true",
                   help="I checked the parts under the camera are good: accept even if the active model "
                   "rejects most of them (recalibration.max_active_false_reject) or the bundle's own good images "
                   "fail the new threshold (the look moved); this run only")  # fmt: skip
    p.set_defaults(func=_cmd_recalibrate)

    p = sub.add_parser("models", help="list, activate, roll back or pack installed bundle versions")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    for name, func, helptext in (
        ("list", _cmd_models_list, "installed versions (* = active) and the variant this device runs"),
        ("activate", _cmd_models_activate, "make VERSION the active one"),
        ("rollback", _cmd_models_rollback, "go back to the active version's parent"),
        ("verify", _cmd_models_verify, "file hashes, signature, key id and trust of a version (exit 2 on a problem)"),
        ("commission", _cmd_models_commission, "measure every variant on this device again and record the choice"),
    ):
        c = models_sub.add_parser(name, help=helptext)
        if name == "commission":  # needs the station: its device, its state directory
            c.add_argument("--config", type=Path, required=True, help="station YAML")
            c.add_argument("--version", help="bundle version (default: the active one)")
            c.set_defaults(func=func, models=None)
            continue
        where = c.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", type=Path, help="station YAML (its model.path)")
        where.add_argument("--models", type=Path, help="model directory, e.g. models/brick")
        if name == "activate":
            c.add_argument("version", help="version number, e.g. 3")
        if name == "list":
            c.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "verify":
            c.add_argument("version", nargs="?", help="version (default: the active one)")
            c.add_argument("--chain", action="store_true", help="also every parent it was recalibrated from")
        c.set_defaults(func=func)
    c = models_sub.add_parser("pack", help="one version as <name>-<version>.tar for a file server (install offers)")
    c.add_argument("version_dir", type=Path, help="version directory, e.g. models/brick/3")
    c.add_argument("-o", "--out", type=Path, default=Path("."), help="folder, or a .tar file name (default: .)")
    c.set_defaults(func=_cmd_models_pack)
