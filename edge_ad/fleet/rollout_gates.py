"""The gates of a staged rollout: what a station's replies, status and stats must show to pass.

Pure functions on the JSON payloads (docs/mqtt.md), so every decision is testable without a broker.
"""

from __future__ import annotations

from typing import Any

from edge_ad.publish.liveness import stats_are_current

__all__ = [
    "DEFAULT_NG_FLOOR",
    "current_stats",
    "install_gate",
    "ng_bound",
    "runs_version",
    "soak_violation",
]

DEFAULT_NG_FLOOR = 0.05  # the NG-rate bound is never tighter than this unless --max-ng-rate says so


def ng_bound(baseline: float | None, override: float | None = None) -> float:
    """The highest NG rate a station may show during the soak.

    ``override`` (``--max-ng-rate``) when given, else ``max(0.05, 2 x baseline)``: twice the station's own NG
    rate before the rollout, but at least 5 % (a station that saw no NG must not fail on its first one).
    """
    if override is not None:
        return override
    return max(DEFAULT_NG_FLOOR, 2.0 * (baseline or 0.0))


def current_stats(status: dict | None, stats: dict | None) -> dict | None:
    """The stats when they are current: not stale, of the same run as a status that says online."""
    if not status or not stats or status.get("state") != "online" or not stats_are_current(status, stats):
        return None
    return stats


def runs_version(status: dict | None, bundle: str, version: str | None) -> bool:
    """Whether the retained status says online, running ``bundle`` version ``version``."""
    if not status or version is None or status.get("state") != "online":
        return False
    model = status.get("model") or {}
    return model.get("name") == bundle and model.get("version") == version


def install_gate(reply: dict[str, Any]) -> str | None:
    """Why a final cmd/install/result fails the install gate (None: it passes).

    Passing means ``installed``, active, with the golden-image self-test and the acceptance set passed.
    """
    state = reply.get("state")
    if state != "installed":
        why = reply.get("reason") or "no reason given"
        return f"install {state}: {why}"
    if reply.get("active") is not True:
        return "installed but not active"
    if reply.get("selftest") is not True:
        return f"self-test did not pass (selftest: {reply.get('selftest')})"
    if reply.get("acceptance") is not True:
        return f"acceptance did not pass (acceptance: {reply.get('acceptance')})"
    return None


def soak_violation(status: dict | None, stats: dict | None, bundle: str, version: str, bound: float) -> str | None:
    """Why a soaking station fails now (None: within bounds so far).

    Fails when the status is not online any more or no longer runs the new version, when the drift alarm is
    raised, or when current stats of the new version show an NG rate above ``bound``.
    """
    if not status or status.get("state") != "online":
        state = (status or {}).get("state", "no status")
        reason = (status or {}).get("reason") or ""
        return f"went {state}{f' ({reason})' if reason else ''} during the soak"
    if not runs_version(status, bundle, version):
        running = (status.get("model") or {}).get("version")
        return f"runs v{running}, not the new v{version}, during the soak"
    drift = status.get("drift")
    if isinstance(drift, dict) and drift.get("alarm"):
        return f"drift alarm during the soak (median OK score {drift.get('median_ok_score')} > {drift.get('limit')})"
    current = current_stats(status, stats)
    if current and (current.get("model") or {}).get("version") == version:
        rate = current.get("ng_rate")
        if isinstance(rate, int | float) and rate > bound:
            return f"NG rate {rate:.3f} above the bound {bound:.3f} during the soak"
    return None
