"""``edge-ad`` command line. Thin: parses arguments and calls the packages.

Export-only code (torch, anomalib, nncf) is imported inside the export subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_ad.errors import EdgeAdError

__all__ = ["main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config
    from edge_ad.service import run

    config = load_config(args.config)
    logging.getLogger().setLevel(args.log_level or config.service.log_level)
    return run(config)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config

    config = load_config(args.file)
    print(f"{args.file}: OK (station {config.station})")
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
    )
    for root in make_dataset(args.out, args.categories, spec):
        print(root)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edge_ad.export.patchcore import PatchcoreParams
    from edge_ad.export.pipeline import export_bundle

    if args.weights and not args.weights.is_file():
        raise EdgeAdError(f"--weights: {args.weights} does not exist")
    params = PatchcoreParams(
        image_size=args.image_size, coreset_ratio=args.coreset_ratio, seed=args.seed, backbone=args.backbone
    )
    result = export_bundle(
        args.data, args.out, name=args.name, params=params, weights=args.weights, int8=not args.no_int8
    )
    m = result.manifest
    print(f"bundle: {result.bundle}")
    for name, variant in m.variants.items():
        print(
            f"  {name}: AUROC {variant.metrics['image_auroc']:.4f}  F1 {variant.metrics['f1']:.4f}  "
            f"threshold {variant.threshold.value:.4f} ({variant.threshold.method})"
        )
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-ad", description="Visual anomaly detection for inspection stations."
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the station daemon")
    p.add_argument("--config", required=True, type=Path, help="station YAML file")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("config", help="check a config file or print its JSON Schema")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    c = config_sub.add_parser("check", help="validate a station YAML file")
    c.add_argument("file", type=Path)
    c.set_defaults(func=_cmd_config_check)
    c = config_sub.add_parser("schema", help="print the config JSON Schema")
    c.set_defaults(func=_cmd_config_schema)
    c = config_sub.add_parser("reference", help="print the Markdown reference of every key")
    c.set_defaults(func=_cmd_config_reference)

    p = sub.add_parser("make-dataset", help="write a synthetic MVTec-layout dataset")
    p.add_argument("out", type=Path)
    p.add_argument("--categories", nargs="+", default=["brick", "gravel"])
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--train", type=int, default=60, help="good training images per category")
    p.add_argument("--test-good", type=int, default=15)
    p.add_argument("--test-defect", type=int, default=10, help="images per defect kind")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_dataset)

    p = sub.add_parser(
        "export", help="train on good images and write an OpenVINO bundle (needs the export extra)"
    )
    p.add_argument("--data", required=True, type=Path, help="category directory (train/good, test/...)")
    p.add_argument("--model", choices=["patchcore"], default="patchcore")
    p.add_argument("--out", type=Path, default=Path("models"), help="models root")
    p.add_argument("--name", help="bundle name (default: the category directory name)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--weights", type=Path, help="backbone ImageNet weights .pth (default: packaged lite0)")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--coreset-ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-int8", action="store_true", help="skip the NNCF INT8 variant")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-ad`` console script."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level or "INFO", format=LOG_FORMAT, stream=sys.stderr)
    try:
        return args.func(args)
    except EdgeAdError as exc:
        print(f"edge-ad: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (
            args.command in ("export", "make-dataset")
            and exc.name
            and exc.name.split(".")[0] in {"torch", "anomalib", "nncf", "skimage"}
        ):
            print(
                f"edge-ad: error: '{exc.name}' is missing; install the export extra: "
                "pip install -e '.[export]'",
                file=sys.stderr,
            )
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
