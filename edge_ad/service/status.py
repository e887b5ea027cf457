"""``edge-ad status``: one screen a technician can read, from the retained MQTT messages and local state."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from typing import Any

from edge_ad.bundle.store import Bundle, active_version, list_versions, load_bundle, resolve_version_dir
from edge_ad.bundle.trust import Trust
from edge_ad.commissioning import resolve_variant
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import BrokerError, EdgeAdError
from edge_ad.inference.device import cpu_flags
from edge_ad.inference.precision import RUN_VARIANTS
from edge_ad.publish.client import connect_tool
from edge_ad.publish.liveness import stats_are_current
from edge_ad.publish.topics import Topics
from edge_ad.types import round_score

__all__ = ["counter_lines", "read_station", "render_status", "stats_are_current"]


def read_station(config: EdgeAdConfig, timeout_s: float = 3.0) -> dict[str, Any]:
    """Retained ``status`` and ``stats`` of the station (each None when the broker has none)."""
    topics = Topics(config.station, config.mqtt.prefix)
    wanted = {topics.status(): "status", topics.stats(): "stats"}
    found: dict[str, Any] = {"status": None, "stats": None}
    done = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            found["error"] = str(reason_code)
            done.set()
            return
        c.subscribe([(topic, 1) for topic in wanted])

    def on_message(c, userdata, msg) -> None:
        try:
            found[wanted[msg.topic]] = json.loads(msg.payload)
        except (KeyError, ValueError):
            return
        if found["status"] is not None and found["stats"] is not None:
            done.set()

    client = connect_tool(config.mqtt, on_connect, on_message)
    done.wait(timeout_s)  # retained messages arrive right after subscribing
    client.disconnect()
    client.loop_stop()
    if "error" in found:
        raise BrokerError(f"mqtt: broker {config.mqtt.host}:{config.mqtt.port} refused: {found['error']}")
    return found


def _local(config: EdgeAdConfig) -> dict[str, Any]:
    local: dict[str, Any] = {"cpu_flags": cpu_flags()}
    try:
        version_dir = resolve_version_dir(config.model.path)
        model_dir = version_dir.parent
        local["bundle"] = f"{model_dir} active v{active_version(model_dir) or version_dir.name}"
        local["versions"] = [p.name for p in list_versions(model_dir)]
        bundle = load_bundle(version_dir, verify=False)
        resolution = resolve_variant(bundle, config.model, config.service.state_dir, commission_missing=False)
        local["commissioning"] = resolution.record.summary() if resolution.record else None
        local["threshold"] = round_score(bundle.variant(RUN_VARIANTS[resolution.variant].ir).threshold.value)
        local["signature"] = _signature_line(config, bundle)
    except EdgeAdError as exc:
        local["bundle"] = f"PROBLEM: {exc}"
    if shutil.which("systemctl"):
        unit = f"edge-ad@{config.station}.service"
        result = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True)
        local["systemd"] = f"{unit} {result.stdout.strip() or 'unknown'}"
    return local


def _signature_line(config: EdgeAdConfig, bundle: Bundle) -> str:
    """How the active version is signed, as the station would judge it (``bundles not signed`` without keys)."""
    try:
        trust = Trust.from_config(config.security)
        verdict = trust.check(load_bundle(bundle.path))
    except EdgeAdError as exc:
        return f"REFUSED: {exc}"
    if not trust.keys:
        return "bundles not signed (no security.trusted_keys): anyone who can write models/ decides what is judged"
    return verdict.describe()


def _precision_lines(status: dict[str, Any], local: dict[str, Any]) -> list[str]:
    """CPU flags, what the plugin would have done unasked, and the commissioning decision."""
    done = status.get("commissioning") or local.get("commissioning") or {}
    flags = done.get("cpu_flags", local["cpu_flags"])
    lines = [
        f"cpu        {' '.join(flags) or 'no avx2/avx512/amx'}    plugin default precision "
        f"{done.get('plugin_default_precision', '?')} (not relied on: edge_ad asks for each variant's precision)"
    ]
    if done:
        lines.append(f"commission auto runs {done.get('chosen')} ({done.get('at', '?')}): {done.get('reason', '')}")
    else:
        lines.append("commission not commissioned on this device yet (the daemon does it at its next start)")
    if status.get("variant_note"):
        lines.append(f"ALARM      {status['variant_note']}")
    return lines


def _ago(ts: float | None) -> str:
    if not ts:
        return "?"
    seconds = max(0, int(time.time() - ts))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def counter_lines(stats: dict[str, Any]) -> list[str]:
    """Triggers and GenICam acquisition counters, when the station has them (what went missing, and where)."""
    lines = []
    triggers = stats.get("triggers")
    if triggers:
        lines.append("triggers   " + "    ".join(f"{key} {triggers.get(key, 0)}" for key in TRIGGER_COUNTS))
    camera = stats.get("camera_counters")
    if camera:
        lines.append("acquire    " + "    ".join(f"{key.replace('_', ' ')} {value}" for key, value in camera.items()))
    return lines


TRIGGER_COUNTS = ("accepted", "rejected", "dropped", "expired")


def render_status(config: EdgeAdConfig, remote: dict[str, Any]) -> str:
    """The technician's screen."""
    status, stats, local = remote.get("status") or {}, remote.get("stats") or {}, _local(config)
    model = status.get("model") or stats.get("model") or {}
    state = status.get("state", "unknown (no retained status on the broker)")
    ended = " (last seen: that run has ended, figures stale)" if stats and not stats_are_current(status, stats) else ""
    lines = [
        f"station    {config.station}    state {state.upper()}  ({_ago(status.get('ts'))})",
        f"camera     {stats.get('camera', '?')}{ended}    source {config.camera.source}    "
        f"dropped frames {stats.get('dropped_frames', '?')}",
        f"model      {model.get('name', '?')} v{model.get('version', '?')} variant {model.get('variant', '?')} "
        f"in {model.get('precision', '?')} on {status.get('device', stats.get('device', '?'))}    "
        f"threshold {status.get('threshold', local.get('threshold', '?'))}",
    ]
    lines += _precision_lines(status, local)
    if stats:
        latency = stats.get("latency_ms", {})
        lines.append(
            f"rate       {stats.get('fps', 0):.1f} fps    NG {100 * stats.get('ng_rate', 0):.1f} %    "
            f"latency p50 {latency.get('p50', '?')} ms p99 {latency.get('p99', '?')} ms    "
            f"frames {stats.get('frames', 0)}{ended}"
        )
        lines.append(
            f"mqtt       {stats.get('mqtt_protocol', '?')}    {stats.get('spooled', 0)} verdicts waiting    "
            f"uptime {stats.get('uptime_s', 0):.0f} s"
        )
        lines += counter_lines(stats)
    else:
        lines.append("rate       no retained stats yet")
    drift = status.get("drift")
    lines.append(f"drift      {'ALARM ' + json.dumps(drift) if drift else 'none'}")
    lines.append(f"last error {status.get('reason') or 'none'}")
    if status.get("device_note"):
        lines.append(f"note       {status['device_note']}")
    lines.append(f"local      {local.get('bundle')}    versions {', '.join(local.get('versions', [])) or '-'}")
    lines.append(f"signature  {local.get('signature', '?')}")
    if "systemd" in local:
        lines.append(f"systemd    {local['systemd']}")
    return "\n".join(lines)
