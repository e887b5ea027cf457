"""``edge-ad`` command line. Thin: parses arguments and calls the packages.

Export-only code (torch, anomalib, nncf, matplotlib) is imported inside the export subcommands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from edge_ad.bundle.manifest import MODEL_TYPES
from edge_ad.commands.cameras import add_parsers as add_cameras_parsers
from edge_ad.commands.cases import add_parsers as add_cases_parsers
from edge_ad.commands.console import add_parsers as add_console_parsers
from edge_ad.commands.fleet import add_parsers as add_fleet_parsers
from edge_ad.commands.keys import add_parsers as add_keys_parsers
from edge_ad.commands.recalibration import add_parsers as add_recalibration_parsers
from edge_ad.commands.service import add_parsers as add_service_parsers
from edge_ad.errors import EdgeAdError

__all__ = ["main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _JournalFormatter(logging.Formatter):
    """sd-daemon priority prefix (``<3>`` error ... ``<7>`` debug); journald adds the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = {logging.DEBUG: 7, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


EXPORT_ONLY = {"torch", "anomalib", "nncf", "skimage", "matplotlib", "lightning", "timm"}
ERROR = 2  # every operator error (EdgeAdError)
GATE_FAILED = 3


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config
    from edge_ad.service import run

    config = load_config(args.config)
    logging.getLogger().setLevel(args.log_level or config.service.log_level)
    return run(config)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config
    from edge_ad.service.preflight import ServiceUser, preflight

    user = ServiceUser.lookup(args.user)
    config = load_config(args.file)
    problems = preflight(config, user, args.file)
    for problem in problems:
        print(f"edge-ad: error: {args.file}: {problem}", file=sys.stderr)
    if problems:
        return ERROR
    print(f"{args.file}: OK (station {config.station}); files and directories checked for user {user.name}")
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    from edge_ad.config import EdgeAdConfig

    print(json.dumps(EdgeAdConfig.model_json_schema(), indent=2))
    return 0


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from edge_ad.config.reference import render_reference

    print(render_reference(), end="")
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from edge_ad.datasets.synthetic import CATEGORIES, DatasetSpec, make_dataset

    unknown = [c for c in args.categories if c not in CATEGORIES]
    if unknown:
        raise EdgeAdError(f"--categories: unknown {', '.join(unknown)}; choose from {', '.join(CATEGORIES)}")
    spec = DatasetSpec(
        size=args.size,
        train=args.train,
        test_good=args.test_good,
        test_defect=args.test_defect,
        seed=args.seed,
        strength=args.defect_strength,
    )
    for root in make_dataset(args.out, args.categories, spec):
        print(root)
    return 0


def _recipe_from_args(args: argparse.Namespace):
    from pydantic import ValidationError

    from edge_ad.config.loader import describe_errors
    from edge_ad.errors import ConfigError
    from edge_ad.export.recipe import ExportRecipe, load_recipe

    if not args.recipe and args.data is None:
        raise EdgeAdError("export: give --data DIR (a category directory) or --recipe FILE")
    base = load_recipe(args.recipe).model_dump() if args.recipe else {}
    overrides = {
        ("data",): args.data,
        ("out",): args.out,
        ("name",): args.name,
        ("seed",): args.seed,
        ("model", "type"): args.model,
        ("model", "backbone"): args.backbone,
        ("model", "weights"): args.weights,
        ("model", "layers"): args.layers,
        ("model", "image_size"): args.image_size,
        ("model", "coreset_ratio"): args.coreset_ratio,
        ("model", "coarse_fraction"): args.coarse_fraction,
        ("model", "exact_patches"): args.exact_patches,
        ("model", "coreset"): args.coreset,
        ("model", "epochs"): args.epochs,
        ("model", "batch_size"): args.train_batch_size,
        ("model", "efficientad_size"): args.efficientad_size,
        ("model", "teacher"): args.teacher,
        ("model", "penalty_dir"): args.penalty_dir,
        ("model", "learning_rate"): args.learning_rate,
        ("model", "auto_latency_ms"): args.auto_latency_ms,
        ("threshold", "method"): args.threshold,
        ("threshold", "k"): args.sigma_k,
        ("threshold", "percentile"): args.percentile,
        ("int8", "mode"): "none" if args.no_int8 else args.int8,
        ("int8", "max_drop"): args.max_drop,
        ("signing", "key"): args.sign_key,
    }
    for keys, value in overrides.items():
        if value is not None:
            node = base
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
    if args.exact_search:
        base.setdefault("model", {})["coarse_fraction"] = None
    try:
        recipe = ExportRecipe.model_validate(base)
    except ValidationError as exc:
        raise ConfigError("export options: " + "; ".join(describe_errors(exc, ExportRecipe))) from None
    for key in ("weights", "teacher"):
        path = getattr(recipe.model, key)
        if path and not path.is_file():
            raise EdgeAdError(f"model.{key} (--{key}): {path} does not exist")
    return recipe


def _print_summary(result) -> None:
    from edge_ad.export.pipeline import NOTHING_QUANTIZED

    m = result.manifest
    total = sum(f.size for f in m.files.values())
    secs = result.seconds
    print(f"\nbundle   {result.bundle}  ({total / 1e6:.1f} MB, {len(m.files)} files)")
    print(f"model    {m.model.type} / {m.model.backbone} {m.model.layers}  input {m.input.width}x{m.input.height}")
    print(f"time     fit {secs.get('fit', 0):.1f} s, INT8 {secs.get('quantize', 0):.1f} s, total {secs['total']:.1f} s")
    _print_choices(m.metrics)
    print(
        f"{'variant':8s} {'status':9s} {'AUROC':>7s} {'PR-AUC':>7s} {'F1':>6s} {'recall':>7s} {'threshold':>10s} method"
    )
    for name, v in m.variants.items():
        mb = m.files[v.bin].size / 1e6
        print(
            f"{name:8s} {v.status:9s} {v.metrics['image_auroc']:7.4f} {v.metrics['pr_auc']:7.4f} "
            f"{v.metrics['f1']:6.3f} {v.metrics['recall']:7.3f} {v.threshold.value:10.4g}  "
            f"{v.threshold.method}  ({mb:.1f} MB)"
        )
    if result.gate is not None:
        g = result.gate
        verdict = "PASS" if g.passed else "FAIL (INT8 rejected; the device runs FP32)"
        print(f"INT8 gate ({g.mode}): validation AUROC drop {g.drop:+.4f}, budget {g.max_drop:.4f} -> {verdict}")
    elif m.metrics.get("int8", {}).get("gate") == NOTHING_QUANTIZED:
        q = m.metrics["int8"]
        print(f"INT8 ({q['mode']}): no layer could stay quantized within the budget {q['max_drop']:.4f} -> FP32 only")
    print(f"report   {result.bundle / 'report' / 'report.html'}")


def _print_trials(label: str, table: dict | None, key: str, row: Callable[[dict], str]) -> None:
    """A choice of the export summary (``input`` size, ``auto`` family): its rule, each candidate, its note."""
    if not table:
        return
    unit = " px" if key == "size" else ""
    print(f"{label:8s} {table['chosen']}{unit}: {table['rule']}")
    for t in table["candidates"]:
        chosen = "  <- chosen" if t[key] == table["chosen"] else ""
        print(f"         {row(t)}  validation AUROC {t['validation_auroc']:.4f}  fit {t['fit_s']:.1f} s{chosen}")
    if table.get("note"):
        print(f"note     {table['note']}")


def _print_choices(metrics: dict) -> None:
    """The model family ``--model auto`` chose and the input size chosen from the data."""
    choice = metrics.get("model_choice")
    if choice and not choice["within_budget"]:
        choice = {**choice, "note": f"no candidate within {choice['budget_ms']:g} ms: the fastest was kept"}
    _print_trials("auto", choice, "type", lambda t: f"{t['type']:20s} {t['size']:4d} px  p50 {t['p50_ms']:6.2f} ms")
    _print_trials("input", metrics.get("input_size"), "size", lambda t: f"{t['size']:4d} px")


def _cmd_export(args: argparse.Namespace) -> int:
    from edge_ad.export.pipeline import export_bundle

    recipe = _recipe_from_args(args)
    with contextlib.redirect_stdout(sys.stderr):  # library progress bars go to stderr; stdout has the summary
        result = export_bundle(recipe)
    _print_summary(result)
    gate = result.gate
    if gate is not None and not gate.passed:
        print(
            f"edge-ad: error: INT8 image-AUROC drop {gate.drop:.4f} exceeds the budget {gate.max_drop:.4f}; "
            "the FP32 bundle was installed and the INT8 variant is marked rejected "
            "(calibrate on more good images, keep more layers in FP32, or raise --max-drop)",
            file=sys.stderr,
        )
        return GATE_FAILED
    return 0


def _cmd_distill_teacher(args: argparse.Namespace) -> int:
    from edge_ad.export.teacher import distill_teacher, teacher_cache

    out = args.out or teacher_cache() / f"pdn_{args.size}.pth"
    with contextlib.redirect_stdout(sys.stderr):
        made = distill_teacher(
            out,
            model_size=args.size,
            steps=args.steps,
            image_size=args.image_size,
            batch_size=args.batch_size,
            images=args.images,
            weights=args.weights,
            seed=args.seed,
        )
    print(
        f"teacher  {made.path}  (PDN-{made.model_size}, {made.out_channels} channels, {made.steps} steps, "
        f"final loss {made.final_loss:.3f})"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from edge_ad.export.report import rebuild_report

    print(rebuild_report(args.bundle, args.out))
    return 0


def _cmd_bench_runtime(args: argparse.Namespace) -> int:
    from edge_ad.bench.report import bench_markdown
    from edge_ad.bench.suite import run_bench

    if args.bundle is None:
        raise EdgeAdError("bench: give --bundle DIR, or a benchmark: 'edge-ad bench coreset ...'")
    if args.anomalib and args.data is None:
        raise EdgeAdError("bench: --anomalib trains anomalib's model on --data DIR; give it")
    if args.e2e_console and not args.e2e:
        raise EdgeAdError("bench: --e2e-console compares end-to-end passes; give --e2e FRAMES too")
    result = run_bench(
        args.bundle,
        images=args.images,
        frames=args.frames,
        requests=tuple(args.requests),
        device=args.device,
        data=args.data,
        e2e_frames=args.e2e,
        e2e_fps=args.e2e_fps,
        e2e_console=args.e2e_console,
        e2e_console_browser=(args.e2e_console_browser, args.e2e_console_browser_cpu),
        anomalib=args.anomalib,
        anomalib_layers=args.anomalib_layers,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(bench_markdown(result))
    return 0


def _cmd_bench_coreset(args: argparse.Namespace) -> int:
    from edge_ad.bench.coreset import run_coreset_bench, selection_bench, to_markdown

    if args.selection:
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # anomalib's progress bar
            print(selection_bench(ratio=args.ratio, seed=args.seed))
        return 0
    if not args.data:
        raise EdgeAdError("bench coreset: give --data DIR ... (full exports), or --selection")
    with contextlib.redirect_stdout(sys.stderr):
        result = run_coreset_bench(args.data, args.image_size, args.ratio, args.seed)
    text = to_markdown(result)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


def _cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from edge_ad.bench.accuracy import Case, accuracy_bench, accuracy_markdown

    spec = {"train": args.train, "test_good": args.test_good, "test_defect": args.test_defect}
    with contextlib.redirect_stdout(sys.stderr):
        result = accuracy_bench([Case.parse(c) for c in args.cases], args.seeds, spec, args.frames)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(accuracy_markdown(result))
    return 0


def _cmd_bench_ladder(args: argparse.Namespace) -> int:
    from edge_ad.bench.accuracy import Case
    from edge_ad.bench.ladder import LadderSettings, ladder_bench, ladder_markdown

    settings = LadderSettings(
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
        train=args.train,
        test_good=args.test_good,
        test_defect=args.test_defect,
    )
    cases = [Case.parse(c) for c in args.data]
    with contextlib.redirect_stdout(sys.stderr):
        result = ladder_bench(cases, args.models, settings)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(ladder_markdown(result))
    return 0


def _cmd_bench_cases(args: argparse.Namespace) -> int:
    from edge_ad.bench.cases import case_precision
    from edge_ad.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    rows = [case_precision(bundle, data, args.k) for data in args.data]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"| data | defect cases | precision@{args.k} | per kind | chance | insert ms | query ms |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        kinds = ", ".join(f"{kind} {p:.3f}" for kind, p in r["per_kind"].items())
        print(
            f"| {r['data']} | {r['cases']} | {r['precision']:.3f} | {kinds} | {r['chance']:.3f} "
            f"| {r['insert_ms']:.2f} | {r['query_ms']:.2f} |"
        )
    return 0


def _cmd_bench_fleet(args: argparse.Namespace) -> int:
    import shlex
    import signal
    from datetime import datetime, timezone

    from edge_ad.bench.fleet import bench_fleet
    from edge_ad.bench.fleet_report import fleet_markdown
    from edge_ad.bench.fleet_rollout import TimedRollout
    from edge_ad.bench.machine import machine
    from edge_ad.datasets.layout import list_images

    images = list_images(args.images) if args.images else None
    if args.images and not images:
        raise EdgeAdError(f"bench fleet: --images {args.images} has no images")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: daemons, brokers, temp dirs
    runs = []
    for stations in args.stations:
        result = bench_fleet(
            args.bundle,
            stations,
            fps=args.fps,
            seconds=args.seconds,
            bridged=args.bridged,
            consumers=args.consumers,
            images=images,
            wave=args.wave,
            rollout=TimedRollout(args.canary, args.soak) if args.rollout else None,
        )
        runs.append(result)
        v = result["verdicts"]
        print(f"bench fleet: {stations} stations: {v['produced']} verdicts produced, {v['received']} received, "
              f"{v['lost']} lost", file=sys.stderr)  # fmt: skip
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = fleet_markdown(runs, shlex.join(["edge-ad", *sys.argv[1:]]), machine(), date)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    if args.markdown:
        args.markdown.write_text(text)
    print(text, end="")
    ok = all(r["verdicts"]["lost"] == 0 and r.get("rollout", {}).get("exit", 0) == 0 for r in runs)
    return 0 if ok else GATE_FAILED


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="train on good images and write an OpenVINO bundle (export extra)")
    p.add_argument("--recipe", type=Path, help="calibration recipe YAML; the options below override it")
    p.add_argument("--data", type=Path, help="category directory (train/good, test/good, test/<defect>)")
    p.add_argument(
        "--model",
        choices=[*MODEL_TYPES, "auto"],
        help="model type (default patchcore); auto: the best of the cheap families within --auto-latency-ms",
    )
    p.add_argument("--auto-latency-ms", type=float, help="--model auto: FP32 p50 budget in ms (default 20)")
    p.add_argument("--sign-key", type=Path, help="Ed25519 private key that signs the bundle (edge-ad keys new)")
    p.add_argument("--out", type=Path, help="models root (default models/)")
    p.add_argument("--name", help="bundle name (default: the category directory name)")
    p.add_argument("--backbone", help="timm backbone (default tf_efficientnet_lite0)")
    p.add_argument("--weights", type=Path, help="backbone ImageNet weights .pth (default: packaged lite0)")
    p.add_argument(
        "--image-size",
        type=int,
        help="square model input in pixels (default: chosen from the data among 128, 192, 256)",
    )
    p.add_argument("--coreset-ratio", type=float, help="PatchCore: fraction of patches kept in the memory bank")
    p.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="backbone layers (default per model; PatchCore: blocks.2)")  # fmt: skip
    p.add_argument("--coarse-fraction", type=float,
                   help="PatchCore fast path: first search this fraction of the bank (default 0.1)")  # fmt: skip
    p.add_argument("--exact-search", action="store_true",
                   help="PatchCore: search the whole bank for every patch (no fast path)")  # fmt: skip
    p.add_argument("--exact-patches", type=int, help="PatchCore fast path: patches searched exactly (default 64)")
    p.add_argument("--coreset", choices=["greedy", "fast", "anomalib"],
                   help="PatchCore coreset: greedy (k-center greedy, the default), fast (batched approximation), "
                   "anomalib (its own, slow)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="epochs of STFPM, EfficientAD, FastFlow, RD and the autoencoders")
    p.add_argument("--batch-size", dest="train_batch_size", type=int,
                   help="training batch size (default 4 for FastFlow, RD and the autoencoders, else 16)")  # fmt: skip
    p.add_argument("--efficientad-size", choices=["small", "medium"], help="EfficientAD PDN size (default small)")
    p.add_argument("--teacher", type=Path, help="EfficientAD teacher from 'edge-ad distill-teacher' (default: cached)")
    p.add_argument("--penalty-dir", type=Path, help="EfficientAD penalty photos (default: scikit-image's)")
    p.add_argument("--learning-rate", type=float, help="EfficientAD Adam learning rate (default 5e-4)")
    p.add_argument(
        "--threshold", choices=["f1", "sigma", "percentile"], help="threshold method (default f1; autoencoder: sigma)"
    )
    p.add_argument("--sigma-k", type=float, help="k of --threshold sigma: mean + k*std of good scores")
    p.add_argument("--percentile", type=float, help="percentile of good scores for --threshold percentile")
    p.add_argument("--int8", choices=["ptq", "aware", "none"], help="NNCF INT8 mode (default ptq)")
    p.add_argument("--max-drop", type=float, help="largest allowed INT8 AUROC drop (default 0.003; EfficientAD 0.01)")
    p.add_argument("--no-int8", action="store_true", help="same as --int8 none")
    p.add_argument("--seed", type=int, help="random seed (same data, recipe and seed: byte-identical bundle)")
    p.set_defaults(func=_cmd_export)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-ad", description="Visual anomaly detection for inspection stations.")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None,
                        help="log level on stderr (default INFO; run: service.log_level)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the station daemon")
    p.add_argument("--config", required=True, type=Path, help="station YAML file")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("config", help="check a config file, print its JSON Schema or reference")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    c = config_sub.add_parser("check", help="validate a station YAML file and what 'run' would refuse")
    c.add_argument("file", type=Path, help="station YAML file")
    c.add_argument("--user", help="check files and directories for this user, e.g. edge-ad (default: you)")
    c.set_defaults(func=_cmd_config_check)
    c = config_sub.add_parser("schema", help="print the config JSON Schema")
    c.set_defaults(func=_cmd_config_schema)
    c = config_sub.add_parser("reference", help="print the Markdown reference of every key")
    c.set_defaults(func=_cmd_config_reference)

    p = sub.add_parser("make-dataset", help="write a synthetic MVTec-layout dataset (export extra)")
    p.add_argument("out", type=Path, help="folder to write (one sub-folder per category)")
    p.add_argument(
        "--categories", nargs="+", default=["brick", "gravel"], help="textures to make (default brick gravel)"
    )
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--train", type=int, default=60, help="good training images per category")
    p.add_argument("--test-good", type=int, default=15, help="good test images per category")
    p.add_argument("--test-defect", type=int, default=10, help="images per defect kind")
    p.add_argument("--defect-strength", type=float, default=1.0, help="defect opacity 0-1 (lower: harder data)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed: same images)")
    p.set_defaults(func=_cmd_make_dataset)

    _add_export_parser(sub)
    add_recalibration_parsers(sub)
    add_service_parsers(sub)
    add_keys_parsers(sub)
    add_cases_parsers(sub)
    add_cameras_parsers(sub)
    add_fleet_parsers(sub)
    add_console_parsers(sub)

    p = sub.add_parser("distill-teacher", help="distil EfficientAD's PDN teacher offline (export extra)")
    p.add_argument("--size", choices=["small", "medium"], default="small", help="EfficientAD PDN size")
    p.add_argument("--out", type=Path, help="teacher file (default: the cache used by export)")
    p.add_argument("--steps", type=int, default=800, help="optimiser steps (800: ~25 min on 2 cores)")
    p.add_argument("--image-size", type=int, default=96, help="crop size in pixels")
    p.add_argument("--batch-size", type=int, default=8, help="images per optimiser step")
    p.add_argument("--images", type=Path, help="photos to distil on (default: scikit-image's)")
    p.add_argument("--weights", type=Path, help="backbone ImageNet weights .pth (default: packaged lite0)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_cmd_distill_teacher)

    p = sub.add_parser("bench", help="benchmarks (results for BENCHMARKS.md)")
    p.add_argument("--bundle", type=Path, help="runtime benchmark of this bundle (version dir or model dir)")
    p.add_argument("--images", type=Path, help="frames to score (default: the bundle's golden images)")
    p.add_argument("--frames", type=int, default=200, help="frames per measurement")
    p.add_argument("--requests", type=int, nargs="+", default=[2, 4], help="in-flight requests for throughput")
    p.add_argument("--device", default="CPU", help="OpenVINO device (CPU, GPU)")
    p.add_argument("--data", type=Path, help="category directory: AUROC per variant on its test images")
    p.add_argument("--e2e", type=int, default=300, metavar="FRAMES",
                   help="frames through the daemon and a private mosquitto (0 skips; needs mosquitto)")  # fmt: skip
    p.add_argument("--e2e-fps", type=float, default=20.0, help="camera rate of the end-to-end run")
    p.add_argument("--e2e-console", type=int, default=0, metavar="PAIRS",
                   help="also PAIRS × (a pass without, a pass with edge-ad console and two live pages streaming): "
                        "the console's cost to the model p99 (console extra + httpx; 0 skips)")  # fmt: skip
    p.add_argument("--e2e-console-browser", choices=("httpx", "chromium"), default="httpx",
                   help="the live pages: two httpx streams, or the live page in a headless Chromium")  # fmt: skip
    p.add_argument("--e2e-console-browser-cpu", choices=("normal", "idle"), default="normal",
                   help="the pages' CPU priority: normal (a browser on the station's PC) or idle (SCHED_IDLE: "
                        "a browser on a tablet, or a kiosk browser run idle)")  # fmt: skip
    p.add_argument("--anomalib", action="store_true",
                   help="also train anomalib's PatchCore on --data, time its inferencers (export extra)")  # fmt: skip
    p.add_argument("--anomalib-layers", nargs="+", metavar="LAYER",
                   help="backbone layers of anomalib's PatchCore (default: the bundle's)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the result as JSON")
    p.set_defaults(func=_cmd_bench_runtime)
    bench_sub = p.add_subparsers(dest="bench_command")
    b = bench_sub.add_parser("coreset", help="edge_ad's coresets vs anomalib's: time and AUROC (export extra)")
    b.add_argument("--data", nargs="+", type=Path, help="category directories (full exports)")
    b.add_argument("--selection", action="store_true", help="time the selection alone, same rows check")
    b.add_argument("--image-size", type=int, default=128, help="model input in pixels")
    b.add_argument("--ratio", type=float, default=0.1, help="coreset ratio")
    b.add_argument("--seed", type=int, default=0, help="random seed")
    b.add_argument("--output", type=Path, help="also write the Markdown table here")
    b.set_defaults(func=_cmd_bench_coreset)
    b = bench_sub.add_parser(
        "accuracy", help="the default export vs anomalib's PatchCore over categories and seeds (export extra)"
    )
    b.add_argument("cases", nargs="+", metavar="CASE",
                   help="TEXTURE=STRENGTH (synthetic texture at that defect strength) or a category dir")  # fmt: skip
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and training seeds")
    b.add_argument("--train", type=int, default=60, help="synthetic: good training images")
    b.add_argument("--test-good", type=int, default=150, help="synthetic: good test images (half are held out)")
    b.add_argument("--test-defect", type=int, default=50, help="synthetic: images per defect kind (3 kinds)")
    b.add_argument("--frames", type=int, default=100, help="frames per latency measurement")
    b.add_argument("--json", type=Path, help="also write the result (with every score) as JSON")
    b.set_defaults(func=_cmd_bench_accuracy)
    b = bench_sub.add_parser("ladder", help="every model family on the same data and input size (export extra)")
    b.add_argument("--data", nargs="+", required=True, metavar="CASE",
                   help="TEXTURE=STRENGTH (synthetic texture at that defect strength) or a category dir")  # fmt: skip
    b.add_argument("--models", nargs="+", default=list(MODEL_TYPES), choices=MODEL_TYPES, metavar="MODEL",
                   help=f"families to compare (default all: {', '.join(MODEL_TYPES)})")  # fmt: skip
    b.add_argument("--image-size", type=int, default=128, help="the one input size of every family")
    b.add_argument("--epochs", type=int, default=10, help="epochs of the families that train for epochs")
    b.add_argument("--seed", type=int, default=0, help="data and training seed")
    b.add_argument("--train", type=int, default=40, help="synthetic: good training images")
    b.add_argument("--test-good", type=int, default=100, help="synthetic: good test images (half are held out)")
    b.add_argument("--test-defect", type=int, default=34, help="synthetic: images per defect kind (3 kinds)")
    b.add_argument("--json", type=Path, help="also write the result (with every score) as JSON")
    b.set_defaults(func=_cmd_bench_ladder)
    b = bench_sub.add_parser("cases", help="similar-case search: precision@k of defect kinds (cases extra)")
    b.add_argument("--bundle", type=Path, required=True, help="PatchCore bundle (version dir or model dir)")
    b.add_argument("--data", nargs="+", type=Path, required=True, help="category directories of that part")
    b.add_argument("-k", type=int, default=5, help="neighbours per query")
    b.add_argument("--json", type=Path, help="also write the result as JSON")
    b.set_defaults(func=_cmd_bench_cases)
    b = bench_sub.add_parser("fleet", help="N station daemons against a local mosquitto: delivery, latency, cost")
    b.add_argument("--bundle", type=Path, required=True,
                   help="the model every station runs (a small one: every daemon compiles and runs it)")  # fmt: skip
    b.add_argument("--stations", type=int, nargs="+", default=[50], metavar="N",
                   help="stations; several numbers run one after the other (10 20 50: how it grows)")  # fmt: skip
    b.add_argument("--fps", type=float, default=2.0, help="camera rate of every station (looping replay)")
    b.add_argument("--seconds", type=float, default=60.0, help="measured window, from the moment all are online")
    b.add_argument("--bridged", action="store_true",
                   help="stations on one mosquitto, consumers on a second, <prefix>/# bridged to it")  # fmt: skip
    b.add_argument("--consumers", type=int, default=1,
                   help="verdict consumers; more than 1 share $share/bench/<prefix>/+/verdict")  # fmt: skip
    b.add_argument("--images", type=Path, help="frames to replay (default: the bundle's golden images)")
    b.add_argument("--wave", type=int, help="daemons started at once (default: the CPU count)")
    b.add_argument("--rollout", action="store_true",
                   help="after the window, time 'edge-ad fleet rollout' of a 2nd signed version to all")  # fmt: skip
    b.add_argument("--canary", type=int, default=2, help="--rollout: canaries first (default 2)")
    b.add_argument("--soak", default="10s", help="--rollout: how long the canaries run before the rest (default 10s)")
    b.add_argument("--json", type=Path, help="also write the results as JSON")
    b.add_argument("--markdown", type=Path, help="also write the Markdown (for BENCHMARKS.md) here")
    b.set_defaults(func=_cmd_bench_fleet)

    p = sub.add_parser("report", help="rebuild a bundle's evaluation report (export extra)")
    p.add_argument("bundle", type=Path, help="bundle version or model directory")
    p.add_argument("--out", type=Path, help="folder to write (default report-<name>-v<version>; never the bundle)")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-ad`` console script."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level or "INFO", format=LOG_FORMAT, stream=sys.stderr)
    if "JOURNAL_STREAM" in os.environ:  # systemd connected stderr to the journal
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    try:
        return args.func(args)
    except EdgeAdError as exc:
        print(f"edge-ad: error: {exc}", file=sys.stderr)
        return ERROR
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in EXPORT_ONLY:  # export-stage command on a runtime-only install
            print(
                f"edge-ad: error: '{exc.name}' is missing; '{args.command}' needs the export extra: "
                "pip install -e '.[export]'",
                file=sys.stderr,
            )
            return ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
