"""The fleet view: every station on one broker, from its retained ``status`` and ``stats`` (docs/fleet.md).

One home for ``edge-ad fleet status`` and the console's fleet page. :class:`FleetView` subscribes to
``<prefix>/+/status`` and ``<prefix>/+/stats`` and keeps the latest of each per station, parsed into
small frozen records as it arrives; :meth:`FleetView.snapshot` hands readers a consistent copy. The rest
is pure: :func:`rows` judges each station (state, figures, alarms, *silent*), :func:`render_table` and
:func:`to_json` show them.

Everything that arrives is hostile until parsed: a payload that is not a JSON object, too big or too
deep, or a status without a textual ``state`` is counted as junk and ignored (the station keeps what it
had); a number that is not a finite number is read as unknown; every text from a topic or a payload
is stripped of control and format characters (ANSI escapes, bidi overrides) and cut to length before
anyone shows it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any

from edge_ad.config import MqttConfig
from edge_ad.errors import first_line
from edge_ad.guard import RateLimitedLog
from edge_ad.publish.liveness import UP_STATES
from edge_ad.publish.subscriber import Subscriber

__all__ = [
    "DEFAULT_SILENT_AFTER_S",
    "MAX_PAYLOAD",
    "MAX_STATIONS",
    "FleetView",
    "Snapshot",
    "StationRow",
    "StationState",
    "StatsInfo",
    "StatusInfo",
    "age_text",
    "clean",
    "healthy",
    "parse_stats",
    "parse_status",
    "render_table",
    "rows",
    "select",
    "to_json",
]

logger = logging.getLogger(__name__)

DEFAULT_SILENT_AFTER_S = 30.0  # stats older than this (or 3 x the station's stats interval, if longer): silent
MAX_PAYLOAD = 256 * 1024  # bytes; a station's messages are a few hundred bytes (like the console feed)
MAX_STATIONS = 10_000  # stations kept; a publisher inventing topics cannot exhaust the memory
MAX_TEXT = 200  # characters of any text kept from a payload
MAX_NAME = 64  # characters of a station name, model name, version, alarm name
DEAD_STATES = ("offline", "error")


class Junk(ValueError):
    """A message that is not what a station publishes (counted, ignored)."""


# -- parsing (pure) ------------------------------------------------------------------------------


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """``value`` as text safe for a terminal and a page: no control or format characters, at most ``limit`` long.

    Control characters (C0, DEL, C1: ESC starts every ANSI sequence), format characters (bidi overrides,
    zero-width) and line/paragraph separators become ``?``; longer text is cut and ends in ``~``.
    """
    text = value if isinstance(value, str) else str(value)
    text = text[: limit + 1]
    out = "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") else ch for ch in text)
    return out if len(out) <= limit else out[: limit - 1] + "~"


def _number(value: Any) -> float | None:
    """A finite number from JSON, else None (``true``, ``NaN``, ``1e999``, an int too big for a float, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    return clean(value, limit) if isinstance(value, str) else None


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise Junk(f"{len(payload)} bytes")
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise Junk(f"not JSON ({clean(first_line(exc), 80)})") from None
    if not isinstance(message, dict):
        raise Junk("not a JSON object")
    return message


@dataclass(frozen=True)
class ModelText:
    """What judges: bundle name, version and run variant (each None when unknown)."""

    name: str | None = None
    version: str | None = None
    variant: str | None = None

    def describe(self) -> str:
        """``brick v2 int8``, ``-`` when nothing is known."""
        if not (self.name or self.version or self.variant):
            return "-"
        return f"{self.name or '?'} v{self.version or '?'}" + (f" {self.variant}" if self.variant else "")


def _model(value: Any) -> ModelText | None:
    if not isinstance(value, dict):
        return None
    version = value.get("version")
    version = str(version) if _number(version) is not None and isinstance(version, int) else version
    return ModelText(_text(value.get("name"), MAX_NAME), _text(version, MAX_NAME), _text(value.get("variant"), 8))


@dataclass(frozen=True)
class DriftInfo:
    """The status' drift alarm: good parts' median score against the limit (fraction x threshold)."""

    median_ok_score: float | None
    limit: float | None

    def describe(self) -> str:
        """``ALARM 24.1/23.8`` (median OK score / limit)."""
        if self.median_ok_score is None or self.limit is None:
            return "ALARM"
        return f"ALARM {self.median_ok_score:.4g}/{self.limit:.4g}"


@dataclass(frozen=True)
class StatusInfo:
    """What the fleet view keeps of a retained status."""

    state: str
    reason: str
    run: str | None
    ts: float | None
    model: ModelText | None
    alarms: tuple[str, ...]
    drift: DriftInfo | None


@dataclass(frozen=True)
class StatsInfo:
    """What the fleet view keeps of retained stats."""

    run: str | None
    ts: float | None
    stale: bool
    fps: float | None
    p99_ms: float | None
    ng_rate: float | None
    model: ModelText | None


def parse_status(payload: bytes) -> StatusInfo:
    """A status payload, read defensively.

    Alarms are the top-level objects with ``"alarm": true`` (``drift``, ``disk``, ``cases``, ``faults``,
    ``opcua``, ``spool`` and any added later), plus ``variant`` when ``variant_note`` says the configured
    variant does not run.

    Raises:
        Junk: Not a JSON object, too big, or without a textual ``state``.
    """
    message = _load(payload)
    state = message.get("state")
    if not isinstance(state, str) or not state:
        raise Junk("no state")
    alarms = sorted(
        clean(key, MAX_NAME)
        for key, value in message.items()
        if isinstance(value, dict) and value.get("alarm") is True and isinstance(key, str)
    )
    if isinstance(message.get("variant_note"), str) and message["variant_note"]:
        alarms.append("variant")
    drift = message.get("drift")
    drift_info = None
    if isinstance(drift, dict) and drift.get("alarm") is True:
        drift_info = DriftInfo(_number(drift.get("median_ok_score")), _number(drift.get("limit")))
    return StatusInfo(
        state=clean(state, 24),
        reason=_text(message.get("reason")) or "",
        run=_text(message.get("run"), MAX_NAME),
        ts=_number(message.get("ts")),
        model=_model(message.get("model")),
        alarms=tuple(alarms[:20]),
        drift=drift_info,
    )


def parse_stats(payload: bytes) -> StatsInfo:
    """A stats payload, read defensively (a figure that is not a finite number, or out of range, is unknown).

    Raises:
        Junk: Not a JSON object, or too big.
    """
    message = _load(payload)
    latency = message.get("latency_ms")
    fps, ng_rate = _number(message.get("fps")), _number(message.get("ng_rate"))
    p99 = _number(latency.get("p99")) if isinstance(latency, dict) else None
    return StatsInfo(
        run=_text(message.get("run"), MAX_NAME),
        ts=_number(message.get("ts")),
        stale=message.get("stale") is True,
        fps=fps if fps is not None and fps >= 0 else None,
        p99_ms=p99 if p99 is not None and p99 >= 0 else None,
        ng_rate=ng_rate if ng_rate is not None and 0 <= ng_rate <= 1 else None,
        model=_model(message.get("model")),
    )


def stats_current(status: StatusInfo | None, stats: StatsInfo | None) -> bool:
    """Whether the stats describe a running station: not ``stale``, and the status of the same run is up.

    The rule of :func:`edge_ad.publish.liveness.stats_are_current` (a test keeps the two equal), on parsed records.
    """
    if status is None or stats is None or stats.stale:
        return False
    return status.state in UP_STATES and stats.run == status.run


# -- the view ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationState:
    """The latest of one station as received (``interval_s``: measured between two stats of one run)."""

    station: str
    status: StatusInfo | None = None
    stats: StatsInfo | None = None
    interval_s: float | None = None
    junk: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a :class:`FleetView`."""

    stations: Mapping[str, StationState]
    junk: int = 0
    last_junk: str | None = None
    connected: bool = False
    error: str | None = None
    subscribed: bool = False


class FleetView(Subscriber):
    """The latest retained status and stats of every station under ``prefix``.

    Args:
        mqtt_config: The broker (host, port, TLS, credentials), as the tools connect; None for a view that is
            only fed with :meth:`receive` (tests, other transports).
        prefix: First topic level; default ``mqtt_config.prefix``.
    """

    def __init__(self, mqtt_config: MqttConfig | None, prefix: str | None = None) -> None:
        self.prefix = prefix or (mqtt_config.prefix if mqtt_config else "edge_ad")
        super().__init__(mqtt_config, (f"{self.prefix}/+/status", f"{self.prefix}/+/stats"), "fleet view")
        self._stations: dict[str, StationState] = {}
        self._junk = 0
        self._last_junk: str | None = None
        self._log = RateLimitedLog(logger)

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message from the subscriptions (a topic paho could not decode arrives as "")."""
        if not topic:
            self._count_junk("?", "topic not UTF-8")
            return
        self.receive(topic, payload)

    # -- state -----------------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes) -> None:
        """Take one message from ``<prefix>/<station>/status|stats`` (others are ignored); never raises on content.

        An empty payload clears that retained message. A death (``offline``/``error``) of another run than the
        latest birth seen here is stale and ignored (docs/mqtt.md#birth-and-death-of-a-run).
        """
        if not topic.startswith(self.prefix + "/"):
            return
        station_raw, _, kind = topic[len(self.prefix) + 1 :].partition("/")
        if not station_raw or kind not in ("status", "stats"):
            return
        station = clean(station_raw, MAX_NAME)
        if not payload:
            self._clear(station, kind)
            return
        try:
            parsed: StatusInfo | StatsInfo = parse_status(payload) if kind == "status" else parse_stats(payload)
        except Junk as exc:
            self._count_junk(station, f"{kind}: {exc}")
            return
        with self._lock:
            known = self._stations.get(station)
            if known is None:
                if len(self._stations) >= MAX_STATIONS:
                    self._junk += 1
                    self._last_junk = f"{station}: more than {MAX_STATIONS} stations, ignored"
                    return
                known = StationState(station)
            if isinstance(parsed, StatusInfo):
                old = known.status
                if (
                    old is not None
                    and parsed.state in DEAD_STATES
                    and old.state in UP_STATES
                    and parsed.run is not None
                    and old.run is not None
                    and parsed.run != old.run
                ):
                    return  # the late death of an earlier run
                known = replace(known, status=parsed)
            else:
                known = replace(known, stats=parsed, interval_s=_interval(known, parsed))
            self._stations[station] = known
            self.version += 1

    def _clear(self, station: str, kind: str) -> None:
        with self._lock:
            known = self._stations.get(station)
            if known is None:
                return
            known = replace(known, **{kind: None})
            if known.status is None and known.stats is None and not known.junk:
                del self._stations[station]
            else:
                self._stations[station] = known
            self.version += 1

    def _count_junk(self, station: str, why: str) -> None:
        latest = f"{station}/{why}"
        with self._lock:
            self._junk += 1
            self._last_junk = latest
            known = self._stations.get(station)
            if known is not None:
                self._stations[station] = replace(known, junk=known.junk + 1)
            elif len(self._stations) < MAX_STATIONS:
                self._stations[station] = StationState(station, junk=1)
            self.version += 1
            count = self._junk
        self._log.warning("fleet junk", "fleet: ignored a message from %s (%d so far)", latest, count)

    def snapshot(self) -> Snapshot:
        """A consistent copy of everything received (the records are frozen: nothing is shared mutable)."""
        with self._lock:
            return Snapshot(
                stations=dict(self._stations),
                junk=self._junk,
                last_junk=self._last_junk,
                connected=self.connected,
                error=self.error,
                subscribed=self._subscribed.is_set(),
            )


def _interval(known: StationState, stats: StatsInfo) -> float | None:
    """The station's stats interval, measured between two stats of one run (they do not carry it)."""
    old = known.stats
    if old is None or old.run != stats.run or old.ts is None or stats.ts is None or stats.stale:
        return known.interval_s
    step = stats.ts - old.ts
    return step if 0 < step <= 3600 else known.interval_s


# -- rows (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationRow:
    """One line of the fleet view."""

    station: str
    state: str
    reason: str
    run: str | None
    model: str | None
    version: str | None
    variant: str | None
    fps: float | None
    p99_ms: float | None
    ng_rate: float | None
    stats_current: bool
    drift: dict[str, Any] | None
    alarms: list[str]
    last_seen_ts: float | None
    last_seen_s: float | None
    silent: bool
    silent_why: str | None
    junk: int = 0
    healthy: bool = field(default=False)


def healthy(row: StationRow) -> bool:
    """Online, not silent, no alarm, nothing malformed received from it."""
    return row.state == "online" and not row.silent and not row.alarms and not row.junk


def age_text(seconds: float | None) -> str:
    """``45s``, ``12m``, ``5h``, ``3d``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _silent(state: StationState, now: float, silent_after_s: float) -> str | None:
    """Why the station counts as silent, or None while it is heard from."""
    status, stats = state.status, state.stats
    if status is None:
        return "no status" if stats is not None else "no valid status"
    if status.state in DEAD_STATES:
        return f"{status.state}: {status.reason}" if status.reason else status.state
    if stats is None:
        return "no stats"
    if not stats_current(status, stats):
        return "stats of an ended run" if stats.stale else "stats of another run"
    limit = max(3 * state.interval_s, silent_after_s) if state.interval_s else silent_after_s
    if stats.ts is not None and now - stats.ts > limit:
        return f"no stats for {age_text(now - stats.ts)}"
    return None


def rows(snapshot: Snapshot, now: float, silent_after_s: float = DEFAULT_SILENT_AFTER_S) -> list[StationRow]:
    """One row per station, sorted by name.

    A station is *silent* when its status says it is down (``offline`` — the Last Will or a stop — or
    ``error``), when it has no status or no stats, when its stats are not current for its status (stale,
    or of another run), or when its newest stats are older than max(3 x its stats interval, ``silent_after_s``).
    The interval is known once two stats of one run were seen; the stats do not carry it. ``last_seen`` is
    the time of the newest stats (the station's heartbeat), else of its status.
    """
    out = []
    for name in sorted(snapshot.stations):
        state = snapshot.stations[name]
        status, stats = state.status, state.stats
        model = (status.model if status else None) or (stats.model if stats else None) or ModelText()
        current = stats_current(status, stats)
        last = stats.ts if stats and stats.ts is not None else (status.ts if status else None)
        why = _silent(state, now, silent_after_s)
        drift = status.drift if status else None
        row = StationRow(
            station=name,
            state=status.state if status else "unknown",
            reason=status.reason if status else "",
            run=status.run if status else None,
            model=model.name,
            version=model.version,
            variant=model.variant,
            fps=stats.fps if stats else None,
            p99_ms=stats.p99_ms if stats else None,
            ng_rate=stats.ng_rate if stats else None,
            stats_current=current,
            drift={"alarm": True, "median_ok_score": drift.median_ok_score, "limit": drift.limit} if drift else None,
            alarms=list(status.alarms) if status else [],
            last_seen_ts=last,
            last_seen_s=round(max(0.0, now - last), 1) if last is not None else None,
            silent=why is not None,
            silent_why=why,
            junk=state.junk,
        )
        out.append(replace(row, healthy=healthy(row)))
    return out


def select(found: list[StationRow], patterns: Iterable[str] | None) -> list[StationRow]:
    """The rows whose station matches one of the fnmatch ``patterns`` (all rows without patterns)."""
    patterns = list(patterns or [])
    return [r for r in found if not patterns or any(fnmatchcase(r.station, p) for p in patterns)]


# -- showing them (pure) -------------------------------------------------------------------------

COLUMNS = ("STATION", "HEALTH", "STATE", "MODEL", "FPS", "P99MS", "NG%", "DRIFT", "SEEN", "ALARMS / WHY")
WIDTH_CAP = {"STATION": 32, "STATE": 16, "MODEL": 32, "DRIFT": 20}


def _figure(value: float | None, fmt: str, current: bool) -> str:
    return format(value, fmt) if value is not None and current else "-"


def _cells(row: StationRow) -> list[str]:
    health = "OK" if row.healthy else "ALARM"
    if row.silent:
        health = f"SILENT {age_text(row.last_seen_s)}" if row.last_seen_s is not None else "SILENT"
    notes = list(row.alarms)
    if row.silent_why:
        notes.insert(0, row.silent_why)
    elif row.reason and row.state != "online":
        notes.insert(0, row.reason)
    if row.junk:
        notes.append(f"{row.junk} malformed")
    drift = "-"
    if row.drift:
        drift = DriftInfo(row.drift.get("median_ok_score"), row.drift.get("limit")).describe()
    model = ModelText(row.model, row.version, row.variant).describe()
    fresh = row.stats_current and not row.silent  # old figures are not shown as if they were today's
    return [
        row.station,
        health,
        row.state,
        model,
        _figure(row.fps, ".1f", fresh),
        _figure(row.p99_ms, ".1f", fresh),
        _figure(None if row.ng_rate is None else 100 * row.ng_rate, ".2f", fresh),
        drift,
        age_text(row.last_seen_s),
        ", ".join(notes) or "-",
    ]


def render_table(found: list[StationRow], snapshot: Snapshot | None = None) -> str:
    """A fixed-width table, one line per station sorted by name, silent stations marked ``SILENT <age>``.

    With the ``snapshot``, a last line counts the malformed messages ignored and names the latest one, and a
    broker problem is named first.
    """
    table = [list(COLUMNS)] + [_cells(r) for r in sorted(found, key=lambda r: r.station)]
    widths = [min(max(len(line[i]) for line in table), WIDTH_CAP.get(name, 1000)) for i, name in enumerate(COLUMNS)]
    lines = []
    if snapshot is not None and snapshot.error:
        lines.append(f"broker: {clean(snapshot.error)}")
    for line in table:
        cells = [c if len(c) <= w else c[: w - 1] + "~" for c, w in zip(line, widths, strict=True)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)) + "  " + cells[-1])
    if len(table) == 1:
        lines.append("(no stations)")
    if snapshot is not None and snapshot.junk:
        lines.append(f"ignored {snapshot.junk} malformed message(s); latest: {clean(snapshot.last_junk or '?')}")
    return "\n".join(lines)


def to_json(
    found: list[StationRow], snapshot: Snapshot | None = None, now: float | None = None, indent: int | None = None
) -> str:
    """The view for machines: ``{"ts", "healthy", "stations": [row...], "junk", "broker"}`` (ASCII-only JSON)."""
    now = time.time() if now is None else now
    document = {
        "ts": round(now, 3),
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "healthy": bool(found) and all(r.healthy for r in found),
        "stations": [asdict(r) for r in found],
        "junk": {"count": snapshot.junk, "latest": snapshot.last_junk} if snapshot else {"count": 0, "latest": None},
        "broker": {"connected": snapshot.connected, "error": snapshot.error} if snapshot else None,
    }
    return json.dumps(document, indent=indent, allow_nan=False)
