"""Every command, subcommand and option of `edge-ad` says what it does in --help."""

from __future__ import annotations

import argparse

from edge_ad.cli import _build_parser


def _missing(parser: argparse.ArgumentParser, path: str) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    out.append(f"{path} {name}")
                out += _missing(sub, f"{path} {name}")
            continue
        if not action.help:
            out.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return out


def test_every_command_and_option_has_help():
    """Found: make-dataset, run, config check and uninstall-service --root said nothing in --help."""
    assert _missing(_build_parser(), "edge-ad") == []
