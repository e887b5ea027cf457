"""The evidence folder as the console reads it: NG frames and heatmaps, only from inside that folder.

The daemon writes ``<YYYYmmdd-HHMMSS>_<seq>.jpg`` and ``<same>_heatmap.jpg`` into one flat folder
(``evidence.dir``, default ``<service.state_dir>/evidence``; :mod:`edge_ad.service.evidence`). The
console serves a file only when its name is a plain JPEG name (no separator, no ``..``, not
hidden), it is a regular file and not a symbolic link, and it resolves into that folder.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ad.config import EdgeAdConfig

__all__ = ["NAME_PATTERN", "Shot", "evidence_dir", "gallery", "open_evidence", "url_of"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.jpe?g")
HEATMAP_SUFFIX = "_heatmap"
STAMP = re.compile(r"(\d{8}-\d{6})_(\d+)$")
ROUTE = "/evidence/"


def evidence_dir(config: EdgeAdConfig) -> Path:
    """The station's evidence folder: ``evidence.dir``, else ``<service.state_dir>/evidence``."""
    return config.evidence.dir or config.service.state_dir / "evidence"


def _inside(folder: Path, name: str, pattern: re.Pattern[str] = NAME_PATTERN) -> Path | None:
    """``folder / name`` when ``name`` is a plain file name (``pattern``) naming a regular file, not a link, in it."""
    if pattern.fullmatch(name) is None or ".." in name:
        return None
    path = folder / name
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return None
        real = path.resolve(strict=True)
        if real.parent != folder.resolve(strict=True) or not real.is_file():
            return None
    except OSError:
        return None
    return path


def open_evidence(folder: Path, name: str, pattern: re.Pattern[str] = NAME_PATTERN) -> int | None:
    """A read-only descriptor of file ``name`` in ``folder`` (never through a symbolic link), or None when refused.

    ``pattern`` is what a name must look like in full (default: an evidence JPEG).
    """
    path = _inside(folder, name, pattern)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def url_of(folder: Path, evidence: Any) -> str | None:
    """The console URL of a verdict's ``evidence`` path, when it names a file in the evidence folder."""
    if not isinstance(evidence, str) or not evidence:
        return None
    path = Path(evidence)
    try:
        same = path.parent.resolve() == folder.resolve()
    except (OSError, RuntimeError):
        return None
    return ROUTE + path.name if same and _inside(folder, path.name) else None


def heatmap_name(name: str) -> str:
    """The heatmap overlay's file name beside frame ``name``."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}{HEATMAP_SUFFIX}.{suffix}"


@dataclass(frozen=True)
class Shot:
    """One NG part as the gallery shows it (from a verdict of the feed, or only its files)."""

    name: str
    image_url: str | None
    heatmap_url: str | None
    ts: float | None = None
    time: str = ""
    seq: int | None = None
    score: float | None = None
    threshold: float | None = None
    score_norm: float | None = None
    case: int | None = None
    hint: dict[str, Any] | None = None
    path: str = ""


def _from_verdict(folder: Path, verdict: dict[str, Any]) -> Shot:
    evidence = verdict.get("evidence")
    url = url_of(folder, evidence)
    name = Path(evidence).name if isinstance(evidence, str) else ""
    heat = url_of(folder, str(Path(evidence).with_name(heatmap_name(name)))) if url else None
    case = verdict.get("case")
    hint = verdict.get("hint")
    return Shot(
        name=name,
        image_url=url,
        heatmap_url=heat,
        ts=verdict.get("ts"),
        time=str(verdict.get("time") or ""),
        seq=verdict.get("seq") if isinstance(verdict.get("seq"), int) else None,
        score=verdict.get("score"),
        threshold=verdict.get("threshold"),
        score_norm=verdict.get("score_norm"),
        case=case if isinstance(case, int) and not isinstance(case, bool) else None,
        hint=hint if isinstance(hint, dict) and isinstance(hint.get("label"), str) else None,
        path=evidence if isinstance(evidence, str) else "",
    )


def _from_file(folder: Path, name: str) -> Shot:
    heat = heatmap_name(name)
    found = STAMP.search(name.rpartition(".")[0])
    ts = seq = None
    when = ""
    if found:
        try:
            ts = float(calendar.timegm(time.strptime(found.group(1), "%Y%m%d-%H%M%S")))
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        except ValueError:
            ts = None
        seq = int(found.group(2))
    return Shot(
        name=name,
        image_url=ROUTE + name,
        heatmap_url=ROUTE + heat if _inside(folder, heat) else None,
        ts=ts,
        time=when,
        seq=seq,
        path=str(folder / name),
    )


def gallery(folder: Path, verdicts: list[dict[str, Any]], limit: int = 48) -> list[Shot]:
    """The newest NG parts, newest first: the feed's NG ``verdicts`` and the evidence folder's files.

    A file a verdict already shows is not shown twice; a verdict whose evidence is gone (pruned, or
    on another filesystem) is still shown, without pictures.
    """
    shots = [_from_verdict(folder, v) for v in verdicts[:limit]]
    shown = {s.name for s in shots if s.name}
    try:
        names = sorted(
            (e.name for e in os.scandir(folder) if NAME_PATTERN.fullmatch(e.name) and HEATMAP_SUFFIX not in e.name),
            reverse=True,
        )
    except OSError:
        names = []
    for name in names[:limit]:
        if name not in shown and _inside(folder, name):
            shots.append(_from_file(folder, name))
    shots.sort(key=lambda s: (s.ts or 0.0, s.seq or 0), reverse=True)
    return shots[:limit]
