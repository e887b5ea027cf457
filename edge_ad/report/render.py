"""Render the report templates to one self-contained HTML file."""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import jinja2

import edge_ad

__all__ = ["data_uri", "environment", "num", "pct", "render_html"]

MISSING = "–"


def num(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits ("–" for None)."""
    return MISSING if value is None else f"{value:.{digits}g}"


def pct(value: float | None, digits: int = 1) -> str:
    """A rate in percent, e.g. ``0.0125`` -> ``1.2 %`` ("–" for None)."""
    return MISSING if value is None else f"{100 * value:.{digits}f} %"


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI, so the report needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@functools.cache
def environment() -> jinja2.Environment:
    """The templates shipped in ``edge_ad/report/templates`` (autoescaped; an unknown variable is an error)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edge_ad.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=num, pct=pct)
    env.globals["edge_ad_version"] = edge_ad.__version__
    return env


def render_html(template: str, path: Path, **context: Any) -> Path:
    """Render ``template`` with ``context`` into ``path`` (UTF-8); returns ``path``."""
    html = environment().get_template(template).render(**context)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
