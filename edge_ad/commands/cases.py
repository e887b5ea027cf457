"""Quality-engineer commands: ``edge-ad cases similar|label|list`` (docs/cases.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parsers"]


def _store(config, snapshot_if_busy: bool):
    from edge_ad.cases.store import cases_dir, open_store

    return open_store(config.cases, cases_dir(config), snapshot_if_busy=snapshot_if_busy)


def _row(rank: int | str, m) -> str:
    p = m.payload
    sim = f"{m.similarity:.3f}" if isinstance(rank, int) else ""
    return (
        f"{rank!s:>3} {m.id:<17} {sim:6} {p.get('time', ''):21} {p.get('station', ''):12} {p.get('verdict', ''):3} "
        f"{p.get('score', float('nan')):<9.4g} {p.get('label') or '-':14} {p.get('snapshot') or '-'}"
    )


HEADER = f"{'#':>3} {'case':<17} {'sim':6} {'time':21} {'station':12} {'v':3} {'score':9} {'label':14} snapshot"


def _cmd_similar(args: argparse.Namespace) -> int:
    from edge_ad.cases.search import similar_to_image
    from edge_ad.cases.sheet import contact_sheet
    from edge_ad.config import load_config
    from edge_ad.datasets.layout import read_images

    config = load_config(args.config)
    image = read_images([args.image], "cases similar")[0]
    score, threshold, matches = similar_to_image(config, image, k=args.k)
    sheet = contact_sheet(image, matches, args.sheet or Path(f"{args.image.stem}_similar.png"))
    if args.json:
        print(json.dumps({"sheet": str(sheet), "score": score, "cases": [_as_dict(m) for m in matches]}))
        return 0
    print(f"query {args.image}: score {score:.4g} (threshold {threshold:.4g})")
    if not matches:
        print("no stored cases of this model yet")
    else:
        print(HEADER)
        for rank, m in enumerate(matches, 1):
            print(_row(rank, m))
    print(f"contact sheet: {sheet}")
    return 0


def _as_dict(m) -> dict:
    return {"id": m.id, "similarity": round(m.similarity, 4), **m.payload}


def _cmd_label(args: argparse.Namespace) -> int:
    from edge_ad.cases.labelling import label_case
    from edge_ad.config import load_config

    print(label_case(load_config(args.config), args.id, args.label))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from edge_ad.config import load_config

    config = load_config(args.config)
    store = _store(config, snapshot_if_busy=True)
    try:
        cases = store.recent(args.n)
        total = store.count()
    finally:
        store.close()
    if args.json:
        print(json.dumps([_as_dict(m) for m in cases]))
        return 0
    print(f"{total} cases stored; newest {len(cases)}:")
    print(HEADER)
    for m in cases:
        print(_row("", m))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``cases`` on the main parser."""
    p = sub.add_parser("cases", help="similar past defects: search, label, list (needs the cases extra)")
    cases_sub = p.add_subparsers(dest="cases_command", required=True)
    c = cases_sub.add_parser("similar", help="the stored cases nearest to an image, and a contact sheet PNG")
    c.add_argument("image", type=Path, help="image of the part to look up")
    c.add_argument("-k", type=int, default=5, help="how many cases")
    c.add_argument("--sheet", type=Path, help="contact sheet PNG (default <image stem>_similar.png)")
    c.set_defaults(func=_cmd_similar)
    c = cases_sub.add_parser("label", help="tag a case (an empty LABEL removes the tag)")
    c.add_argument("id", type=int, help="case id (from 'cases similar' or a verdict's 'case')")
    c.add_argument("label", help="what the defect is, e.g. scratch")
    c.set_defaults(func=_cmd_label)
    c = cases_sub.add_parser("list", help="the newest cases")
    c.add_argument("-n", type=int, default=20, help="how many")
    c.set_defaults(func=_cmd_list)
    for c in (cases_sub.choices["similar"], cases_sub.choices["label"], cases_sub.choices["list"]):
        c.add_argument("--config", required=True, type=Path, help="station YAML file")
        if c.prog.split()[-1] != "label":
            c.add_argument("--json", action="store_true", help="machine-readable output")
