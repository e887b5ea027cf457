"""``edge-ad bench fleet``: N real station daemons on one machine against one local mosquitto (or two, bridged).

Every station is a real ``edge-ad run`` on its own replay folder at ``fps``, with its own name,
config and state directory. Daemons start in waves of ``wave`` (OpenVINO compiles at start-up);
the measured window of ``seconds`` starts when every station has said ``online`` and ends with a
SIGTERM to all of them (a clean stop: they flush what the broker has not acknowledged and publish
their final, stale stats, whose ``frames`` is what each produced). ``service.max_frames`` only
bounds a daemon orphaned by a killed benchmark.

Latency is frame grabbed (the verdict's ``ts``) → verdict received by a consumer, same clock; CPU
comes from ``/proc/<pid>/stat`` over the window, memory from ``/proc/<pid>/status`` (the peak over the
whole run: start-up, window, an optional rollout phase and the stop).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.bench.fleet_clients import PROBE, Consumer, Monitor, cpu_ticks, machine_ticks, memory_kb
from edge_ad.bench.fleet_rollout import FleetPhase
from edge_ad.bench.mosquitto import Broker, bridge_config, start_mosquitto
from edge_ad.errors import EdgeAdError

__all__ = ["Fleet", "bench_fleet", "station_names"]

PREFIX = "edge_ad"
GROUP = "bench"  # the shared-subscription group of the consumers
RSS_ESTIMATE_KB = 200_000  # one tiny-bundle daemon peaks at ~150 MB; refuse to start what cannot fit
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 20.0


def station_names(count: int) -> list[str]:
    """``fleet-001`` ... (an MQTT topic level, a file name)."""
    return [f"fleet-{i:03d}" for i in range(1, count + 1)]


@dataclass
class Fleet:
    """A running fleet, for a phase run inside the measured fleet (``rollout``)."""

    workdir: Path
    bundle: Path
    station_broker: Broker  # where the stations connect
    consumer_broker: Broker  # where consumers and operators connect (the same one unless bridged)
    stations: list[str]
    configs: dict[str, Path]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)


def _config(
    fleet: Fleet, station: str, images: list[Path], fps: float, max_frames: int, phase: FleetPhase | None
) -> Path:
    home = fleet.workdir / station
    frames = home / "frames"
    frames.mkdir(parents=True)
    for i, image in enumerate(images):
        shutil.copy(image, frames / f"{i:05d}{image.suffix}")
    config = {
        "station": station,
        "camera": {"source": str(frames), "fps": fps, "loop": True},
        "model": {"path": str(fleet.bundle)},
        "mqtt": {"host": fleet.station_broker.host, "port": fleet.station_broker.port, "prefix": PREFIX},
        "service": {"state_dir": str(home / "state"), "max_frames": max_frames, "log_level": "WARNING"},
        "evidence": {"enabled": False},
    }
    for section, values in (phase.station_config(station, home) if phase else {}).items():
        config[section] = {**config.get(section, {}), **values}
    path = home / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _check_memory(stations: int) -> None:
    available = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1])
    if available and stations * RSS_ESTIMATE_KB > available:
        raise EdgeAdError(
            f"bench fleet: {stations} daemons need about {stations * RSS_ESTIMATE_KB // 1024} MB, "
            f"{available // 1024} MB available"
        )


def _log_tail(fleet: Fleet, station: str) -> str:
    with contextlib.suppress(OSError):
        return (fleet.workdir / station / "daemon.log").read_text(errors="replace").strip()[-500:]
    return ""


def _start(fleet: Fleet, monitor: Monitor, wave: int) -> None:
    """Start every station, ``wave`` at a time, each wave once the previous one is online."""
    for i in range(0, len(fleet.stations), wave):
        batch = fleet.stations[i : i + wave]
        for station in batch:
            log = (fleet.workdir / station / "daemon.log").open("wb")
            fleet.started[station] = time.time()
            fleet.procs[station] = subprocess.Popen(
                [sys.executable, "-m", "edge_ad.cli", "run", "--config", str(fleet.configs[station])],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # a Ctrl-C reaches the benchmark, which stops them in order
            )
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not monitor.online(batch):
            for station in batch:
                if fleet.procs[station].poll() is not None:
                    raise EdgeAdError(f"bench fleet: {station} exited at start-up: {_log_tail(fleet, station)}")
            if time.monotonic() > deadline:
                raise EdgeAdError(f"bench fleet: {', '.join(batch)} not online after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)


def _stop(procs: dict[str, subprocess.Popen], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every daemon still running; SIGKILL what is left after ``timeout``."""
    for proc in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _MemorySampler(threading.Thread):
    """Peak resident set (``VmHWM``) of each daemon and broker, polled until stopped."""

    def __init__(self, pids: Callable[[], dict[str, int]], interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="fleet-memory")
        self.pids, self.interval = pids, interval
        self.peak_kb: dict[str, int] = {}
        self.stop_event = threading.Event()

    def sample(self) -> None:
        """One reading of every process."""
        for name, pid in self.pids().items():
            reading = memory_kb(pid)
            if reading is not None:
                self.peak_kb[name] = max(self.peak_kb.get(name, 0), reading[1])

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()


@contextlib.contextmanager
def _brokers(workdir: Path, bridged: bool, extra: str = "") -> Iterator[tuple[Broker, Broker]]:
    """(station broker, consumer broker): one mosquitto, or two with ``<prefix>/#`` bridged stations → consumers."""
    (workdir / "broker-a").mkdir()
    if not bridged:
        with start_mosquitto(workdir / "broker-a", extra=extra) as broker:
            yield broker, broker
        return
    (workdir / "broker-b").mkdir()
    with start_mosquitto(workdir / "broker-b", extra=extra) as consumers:
        bridge = bridge_config("fleet-bridge", consumers, f"{PREFIX}/#", "out")
        with start_mosquitto(workdir / "broker-a", extra=extra + bridge) as stations:
            yield stations, consumers


def _wait_for_bridge(stations: Broker, monitor: Monitor, timeout: float = 20.0) -> None:
    """Publish probes on the station broker until the monitor, on the consumer broker, gets one."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-ad-bench-probe-{os.getpid()}")
    client.connect(stations.host, stations.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not monitor.probed.wait(0.5):
            if time.monotonic() > deadline:
                raise EdgeAdError(f"bench fleet: the bridge did not forward a message within {timeout:.0f} s")
            client.publish(f"{PREFIX}/{PROBE}/status", b"probe", qos=1)
    finally:
        client.disconnect()
        client.loop_stop()


def _percent(before: dict[int, int], after: dict[int, int], pids: list[int], seconds: float) -> float:
    """CPU of ``pids`` over the window as % of one core."""
    ticks = sum(after.get(pid, before.get(pid, 0)) - before.get(pid, 0) for pid in pids)
    return 100.0 * ticks / os.sysconf("SC_CLK_TCK") / seconds


def bench_fleet(
    bundle: Path,
    stations: int,
    fps: float = 2.0,
    seconds: float = 60.0,
    bridged: bool = False,
    consumers: int = 1,
    images: list[Path] | None = None,
    wave: int | None = None,
    rollout: FleetPhase | None = None,
) -> dict:
    """Run ``stations`` daemons at ``fps`` for a measured window of ``seconds``; verdict delivery, latency, cost.

    Args:
        bundle: The model every station runs (a version or model directory).
        stations: How many daemons.
        fps: Each station's camera rate (a looping replay folder of ``images``).
        seconds: The measured window, from the moment all are online.
        bridged: Stations on one mosquitto, consumers on a second one, ``<prefix>/#`` bridged between them.
        consumers: Verdict consumers; more than one share the subscription ``$share/bench/<prefix>/+/verdict``.
        images: The replayed frames (default: the bundle's golden images; its good ones with ``rollout``).
        wave: Daemons started at once (default: the CPU count).
        rollout: A phase run on the live fleet after the window (a :class:`TimedRollout`); its result goes under
            ``rollout``, with how many stations then ran its version.

    Returns:
        The measurements (the keys :func:`edge_ad.bench.fleet_report.fleet_markdown` reads).

    Raises:
        EdgeAdError: mosquitto missing, too little memory, a daemon failing or not coming online.
    """
    from edge_ad.bundle import load_bundle

    loaded = load_bundle(bundle)
    # a rollout's soak bounds the NG rate: replay only the good golden images then (a healthy line)
    golden = [g for g in loaded.manifest.golden if rollout is None or g.label == 0]
    images = images or [loaded.path / g.file for g in golden]
    if not images:
        raise EdgeAdError(f"bench fleet: {bundle} has no golden images; give images")
    if stations < 1 or consumers < 1 or fps <= 0 or seconds <= 0:
        raise EdgeAdError("bench fleet: stations, consumers, fps and seconds must be positive")
    _check_memory(stations)
    wave = wave or os.cpu_count() or 1
    names = station_names(stations)
    max_frames = int(fps * (seconds + 10 * stations + 600))  # a dead-man bound only: the window ends by SIGTERM
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-ad-fleet-")))
        if rollout is not None:
            stack.callback(rollout.close)
            rollout.prepare(workdir, loaded.path)
        extra = rollout.broker_config() if rollout is not None else ""
        station_broker, consumer_broker = stack.enter_context(_brokers(workdir, bridged, extra))
        fleet = Fleet(workdir, loaded.path.resolve(), station_broker, consumer_broker, names, {})
        fleet.configs = {s: _config(fleet, s, images, fps, max_frames, rollout) for s in names}
        monitor = Monitor(consumer_broker, PREFIX)
        stack.callback(monitor.close)
        if bridged:
            _wait_for_bridge(station_broker, monitor)
        group = GROUP if consumers > 1 else None
        readers = [Consumer(consumer_broker, PREFIX, i, group) for i in range(consumers)]
        for reader in readers:
            stack.callback(reader.close)
        brokers = {"stations": station_broker, "consumers": consumer_broker} if bridged else {"broker": station_broker}
        sampler = _MemorySampler(
            lambda: (
                {s: p.pid for s, p in list(fleet.procs.items()) if p.poll() is None}
                | {f"broker:{role}": b.process.pid for role, b in brokers.items()}
            )
        )
        sampler.start()
        stack.callback(sampler.stop_event.set)
        stack.callback(_stop, fleet.procs)  # on any error or Ctrl-C, before the brokers go
        first_start = time.time()
        _start(fleet, monitor, wave)
        all_online = time.time()

        daemon_pids = [p.pid for p in fleet.procs.values()]
        broker_pids = {role: b.process.pid for role, b in brokers.items()}
        t0, before, busy0 = time.time(), cpu_ticks(daemon_pids + list(broker_pids.values())), machine_ticks()
        time.sleep(seconds)
        t1, after, busy1 = time.time(), cpu_ticks(daemon_pids + list(broker_pids.values())), machine_ticks()
        sampler.sample()
        rollout_result = None
        if rollout is not None:
            rollout_result = rollout.run(fleet)
            version = rollout_result.get("version")
            rollout_result["on_version"] = sum(monitor.stations[s].version == version for s in names)

        _stop(fleet.procs)
        failed = {s: p.returncode for s, p in fleet.procs.items() if p.returncode != 0}
        if failed:
            station = next(iter(failed))
            raise EdgeAdError(f"bench fleet: {station} exited with {failed[station]}: {_log_tail(fleet, station)}")
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            finals = [monitor.stations.get(s) for s in names]
            if all(f is not None and f.final is not None for f in finals):
                produced = sum(f.final["frames"] for f in finals if f and f.final)
                if len(_unique(readers)) >= produced:
                    break
            time.sleep(0.1)
        window = (t0, t1)
        cpu = {
            "brokers": {role: _percent(before.ticks, after.ticks, [pid], t1 - t0) for role, pid in broker_pids.items()},
            "daemons": _percent(before.ticks, after.ticks, daemon_pids, t1 - t0),
            "machine": 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        }
        result = _result(
            fleet, monitor, readers, sampler.peak_kb, cpu, window, (first_start, all_online),
            {"fps": fps, "seconds": seconds, "bridged": bridged, "consumers": consumers, "wave": wave,
             "bundle": f"{loaded.manifest.name} v{loaded.manifest.version}"},
            rollout_result,
        )  # fmt: skip
    return result


def _unique(readers: list[Consumer]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """Verdicts received, de-duplicated by (station, run, seq): (arrival, ts, payload + topic bytes) of the first."""
    seen: dict[tuple[str, str, int], tuple[float, float, int]] = {}
    for reader in readers:
        for arrival, topic, payload in list(reader.arrivals):
            v = json.loads(payload)
            if "seq" not in v:  # an ERROR answer to a trigger (none in free run)
                continue
            key = (v["station"], v.get("run", ""), v["seq"])
            if key not in seen or arrival < seen[key][0]:
                seen[key] = (arrival, v["ts"], len(payload) + len(topic))
    return seen


def _result(
    fleet: Fleet,
    monitor: Monitor,
    readers: list[Consumer],
    peak_kb: dict[str, int],
    cpu: dict,
    window: tuple[float, float],
    start: tuple[float, float],
    settings: dict,
    rollout: dict | None,
) -> dict:
    t0, t1 = window
    seconds = t1 - t0
    unique = _unique(readers)
    received_total = sum(len(r.arrivals) for r in readers)
    produced = {s: (monitor.stations[s].final or {}).get("frames", 0) for s in fleet.stations}
    # latency of the verdicts captured inside the window (start-up of the other daemons left out)
    lat = np.array([(arrival - ts) * 1000 for arrival, ts, _ in unique.values() if t0 <= ts < t1])
    verdicts_in = [size for arrival, _, size in unique.values() if t0 <= arrival < t1]
    others = [(a, len(t) + len(p)) for a, t, p in monitor.arrivals if t0 <= a < t1 and f"/{PROBE}/" not in t]
    n = len(fleet.stations)
    startup = [monitor.stations[s].online_at - fleet.started[s] for s in fleet.stations]  # type: ignore[operator]
    rss = {s: peak_kb.get(s, 0) for s in fleet.stations}
    return {
        "stations": n,
        **settings,
        "window_s": round(seconds, 2),
        "verdicts": {
            "produced": sum(produced.values()),
            "received": len(unique),
            "lost": sum(produced.values()) - len(unique),
            "duplicates": received_total - len(unique),
            "per_consumer": [len(r.arrivals) for r in readers],
        },
        "latency_ms": {
            "count": int(lat.size),
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p99": float(np.percentile(lat, 99)) if lat.size else None,
            "max": float(lat.max()) if lat.size else None,
        },
        "cpu_pct": {
            "brokers": {role: round(v, 2) for role, v in cpu["brokers"].items()},
            "broker_total": round(sum(cpu["brokers"].values()), 2),
            "daemons_total": round(cpu["daemons"], 1),
            "daemon_mean": round(cpu["daemons"] / n, 2),
            "machine": round(cpu["machine"], 1),
        },
        "rss_kb": {
            "stations": rss,
            "sum": sum(rss.values()),
            "max": max(rss.values()),
            "mean": round(sum(rss.values()) / n),
            "brokers": {k.removeprefix("broker:"): v for k, v in peak_kb.items() if k.startswith("broker:")},
        },
        "per_station": {
            "verdicts_per_s": round(len(verdicts_in) / seconds / n, 3),
            "msgs_per_s": round((len(verdicts_in) + len(others)) / seconds / n, 3),
            "bytes_per_s": round((sum(verdicts_in) + sum(size for _, size in others)) / seconds / n, 1),
            "verdict_bytes": round(float(np.mean(verdicts_in)), 1) if verdicts_in else None,
        },
        "startup_s": {
            "all": round(start[1] - start[0], 1),
            "p50": round(float(np.percentile(startup, 50)), 2),
            "max": round(max(startup), 2),
        },
        **({"rollout": rollout} if rollout is not None else {}),
    }
