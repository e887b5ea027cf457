"""The plan and state of a staged rollout: stations, roles, stages and what happened, as one JSON file.

The file ``rollout-<id>.json`` is rewritten atomically after every change, so an interrupted rollout can be
resumed (or aborted) from it. It holds no keys and no broker credentials.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from edge_ad.errors import EdgeAdError

__all__ = [
    "FINAL_STATES",
    "INSTALL_FINAL",
    "STATES",
    "Options",
    "Rollout",
    "StationRecord",
    "choose_canaries",
    "make_plan",
    "match_stations",
    "parse_duration",
    "rollout_id",
]

FORMAT = 1  # of the state file
STATES = (
    "pending",  # not offered yet (never touched)
    "offered",  # the install command was sent
    "installing",  # the station reported progress (downloading, verifying, commissioning)
    "installed",  # installed and active, the station's status shows it
    "soaking",  # installed, watched for --soak
    "passed",  # every gate of its stage passed
    "failed",  # a gate failed (the station refused the bundle, or it failed after activation)
    "rolled_back",  # it ran the new version and was rolled back
    "rollback_failed",  # it ran the new version and the rollback did not succeed: look at it
    "skipped",  # offline (or running another model) when its turn came; never touched
)
FINAL_STATES = frozenset({"passed", "failed", "rolled_back", "rollback_failed", "skipped"})
ROLLOUT_STATES = ("running", "completed", "stopped", "aborted")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

INSTALL_FINAL = frozenset({"installed", "failed", "error", "rejected"})  # the last reply to an offer


def parse_duration(text: str) -> float:
    """Seconds in ``10m``, ``30s``, ``1h``, ``1h30m``, ``500ms`` or a bare number of seconds.

    Raises:
        EdgeAdError: Not a duration.
    """
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        if not text or DURATION.sub("", text):
            raise EdgeAdError(f"{text!r}: not a duration; write e.g. 30s, 10m, 1h or 1h30m") from None
        return sum(float(n) * UNITS[unit] for n, unit in DURATION.findall(text))
    if value < 0 or value != value:
        raise EdgeAdError(f"{text!r}: a duration cannot be negative")
    return value


def rollout_id(bundle: str, version: str, now: float | None = None) -> str:
    """A new rollout id: ``<bundle>-v<version>-<UTC yyyymmddHHMMSS>`` (at most 50 characters)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{bundle[:24]}-v{version}-{stamp}"


def match_stations(names: list[str], pattern: str) -> list[str]:
    """The station names matching a shell-style ``pattern`` (``line3-*``, ``cam[12]``; commas: any of), sorted."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    return sorted(n for n in set(names) if any(fnmatchcase(n, p) for p in patterns))


def choose_canaries(ready: list[str], count: int, named: list[str] | None = None) -> list[str]:
    """The canaries: the ``named`` ones (each must be ready), else the first ``count`` of ``ready`` sorted.

    Raises:
        EdgeAdError: A named canary is not among the ready stations, or no canary at all.
    """
    if named:
        missing = [n for n in named if n not in ready]
        if missing:
            raise EdgeAdError(
                f"--canaries: {', '.join(missing)} not among the online stations matching --stations; "
                "name online stations or drop --canaries"
            )
        return list(dict.fromkeys(named))
    if count < 1:
        raise EdgeAdError("--canary: give at least 1 (the canaries prove the bundle before the rest get it)")
    if not ready:
        raise EdgeAdError("no online station matches --stations: check the pattern and the stations' status")
    return sorted(ready)[:count]


@dataclass
class Options:
    """How the rollout runs (kept in the state file; --resume may override the durations)."""

    soak_s: float = 600.0
    soak_all: bool = False
    batch: int = 10
    max_ng_rate: float | None = None  # None: max(0.05, 2 x the station's NG rate before the rollout)
    install_timeout_s: float = 600.0
    rollback_timeout_s: float = 120.0
    allow_offline: bool = False


@dataclass
class StationRecord:
    """One station in the rollout: its role, stage and everything that happened to it."""

    station: str
    role: Literal["canary", "rest"]
    stage: int  # 0: the canaries, 1...: the batches of the rest; -1: not part of it (runs another model)
    state: str = "pending"
    previous: str | None = None  # the station's active version before the offer
    new: str | None = None  # the station's own version number of the offered bundle (from its installed reply)
    activated: bool = False  # the station reported the new version active (a rollback is due on failure)
    variant: str | None = None
    selftest: bool | None = None
    acceptance: bool | None = None
    baseline_ng_rate: float | None = None  # from the station's current stats before the offer
    ng_bound: float | None = None
    max_ng_rate: float | None = None  # during the soak
    soak_samples: int = 0  # stats of the new version seen during the soak
    command: str | None = None  # id of the latest command sent to it
    replies: list[str] = field(default_factory=list)  # reply states, in order
    rollback: str | None = None  # what the rollback said
    reason: str = ""
    offered_at: float | None = None
    finished_at: float | None = None
    updated: float | None = None

    @property
    def unanswered(self) -> bool:
        """Offered, but no final install reply came: it may still install the new version (a rollback is due)."""
        return self.offered_at is not None and not any(s in INSTALL_FINAL for s in self.replies)

    @property
    def touched(self) -> bool:
        """Whether anything was ever sent to it."""
        return self.command is not None


@dataclass
class Rollout:
    """A staged rollout of one bundle package to the stations matching a pattern (saved as JSON)."""

    id: str
    bundle: str
    version: str  # in the publisher's store
    manifest_sha256: str
    url: str
    size: int
    prefix: str
    pattern: str
    options: Options
    stations: list[StationRecord]
    state: str = "running"
    reason: str = ""
    created: float = field(default_factory=time.time)
    updated: float | None = None
    path: Path | None = field(default=None, compare=False)

    def record(self, station: str) -> StationRecord:
        """The record of ``station``."""
        for r in self.stations:
            if r.station == station:
                return r
        raise KeyError(station)

    def stages(self) -> list[tuple[int, list[StationRecord]]]:
        """The stages still to run, in order: (stage number, its stations that have not passed yet)."""
        todo: dict[int, list[StationRecord]] = {}
        for r in self.stations:
            if r.stage >= 0 and r.state != "passed":
                todo.setdefault(r.stage, []).append(r)
        return sorted(todo.items())

    def save(self) -> Path:
        """Write the state file atomically (a temporary file renamed over it)."""
        if self.path is None:
            raise ValueError("rollout has no state file path")
        self.updated = time.time()
        data = asdict(self)
        data.pop("path")
        data["format"] = FORMAT
        part = self.path.with_name(f".{self.path.name}.part")
        with open(part, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        part.replace(self.path)
        return self.path

    @classmethod
    def load(cls, path: Path) -> Rollout:
        """Read a state file.

        Raises:
            EdgeAdError: Unreadable or not a rollout state file.
        """
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            if data.pop("format", None) != FORMAT:
                raise ValueError(f"not a rollout state file of format {FORMAT}")
            known = {f.name for f in fields(StationRecord)}
            stations = [StationRecord(**{k: v for k, v in s.items() if k in known}) for s in data.pop("stations")]
            options = Options(**data.pop("options"))
            return cls(**data, options=options, stations=stations, path=path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise EdgeAdError(f"{path}: cannot read the rollout state ({reason}); give a rollout-<id>.json") from None


def make_plan(
    offer: dict[str, Any],
    prefix: str,
    pattern: str,
    statuses: dict[str, dict],
    options: Options,
    canary: int = 1,
    canaries: list[str] | None = None,
    now: float | None = None,
) -> Rollout:
    """Plan a rollout of ``offer`` (bundle, version, manifest_sha256, url, size) from the stations' retained status.

    Stations matching ``pattern`` that are online and run the offer's model take part; the canaries form
    stage 0, the rest follow sorted in batches of ``options.batch`` (stages 1...). One that is not online
    is listed as skipped in its batch (and offered there if it is back by then); one running another model
    is listed as skipped and never offered.

    Raises:
        EdgeAdError: No station matches, a matching station is offline without ``options.allow_offline``,
            or the canaries cannot be chosen.
    """
    names = match_stations(list(statuses), pattern)
    if not names:
        seen = ", ".join(sorted(statuses)[:8]) or "none"
        raise EdgeAdError(f"--stations {pattern!r}: no station on the broker matches (stations seen: {seen})")
    ready, offline, other = [], [], []
    for name in names:
        status = statuses[name]
        model = status.get("model") or {}
        if status.get("state") != "online":
            offline.append(name)
        elif model.get("name") != offer["bundle"]:
            other.append(name)
        else:
            ready.append(name)
    if offline and not options.allow_offline:
        listed = ", ".join(f"{n} ({statuses[n].get('state')})" for n in offline)
        raise EdgeAdError(f"not online: {listed}; start them, narrow --stations, or give --allow-offline to skip them")
    chosen = choose_canaries(ready, canary, canaries)
    records = [StationRecord(station=n, role="canary", stage=0) for n in chosen]
    rest = sorted(n for n in ready + offline if n not in chosen)
    for i, name in enumerate(rest):
        record = StationRecord(station=name, role="rest", stage=1 + i // max(1, options.batch))
        if name in offline:
            record.state, record.reason = "skipped", f"{statuses[name].get('state')} when the rollout started"
        records.append(record)
    for name in other:
        model = (statuses[name].get("model") or {}).get("name")
        why = f"runs model {model}, not {offer['bundle']}"
        records.append(StationRecord(station=name, role="rest", stage=-1, state="skipped", reason=why))
    created = time.time() if now is None else now
    return Rollout(
        id=rollout_id(offer["bundle"], offer["version"], created),
        bundle=offer["bundle"],
        version=offer["version"],
        manifest_sha256=offer["manifest_sha256"],
        url=offer["url"],
        size=offer["size"],
        prefix=prefix,
        pattern=pattern,
        options=options,
        stations=records,
        created=created,
    )
