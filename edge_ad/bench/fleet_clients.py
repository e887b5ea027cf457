"""The fleet benchmark's MQTT side: verdict consumers, a status/stats monitor, and /proc readings."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.bench.mosquitto import Broker
from edge_ad.errors import EdgeAdError

__all__ = ["Consumer", "Monitor", "cpu_ticks", "machine_ticks", "memory_kb"]

PROBE = "_probe"  # the bridge probe's "station" (no station can be named so: they start with a letter or digit)


def _client(name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(min_delay=0.2, max_delay=1)
    return client


class _Subscriber:
    """A clean MQTT 5 session subscribed to ``topics`` (QoS 1) that keeps raw arrivals."""

    def __init__(self, broker: Broker, name: str, topics: list[str]) -> None:
        self.arrivals: list[tuple[float, str, bytes]] = []  # (arrival time, topic, payload)
        self._subscribed = threading.Event()
        self.client = _client(name)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, clean_start=True)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise EdgeAdError(f"bench fleet: {name} cannot subscribe on {broker.host}:{broker.port}")

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, codes: list, props: object) -> None:
        if any(code.is_failure for code in codes):
            return  # never set: the constructor reports it
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.arrivals.append((time.time(), msg.topic, bytes(msg.payload)))  # stamp first, parse later

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


class Consumer(_Subscriber):
    """A verdict consumer: ``<prefix>/+/verdict``, or one member of the shared group ``$share/<group>/...``."""

    def __init__(self, broker: Broker, prefix: str, index: int, group: str | None) -> None:
        topic = f"{prefix}/+/verdict"
        super().__init__(broker, f"edge-ad-bench-consumer{index}", [f"$share/{group}/{topic}" if group else topic])


@dataclass
class StationSeen:
    """What the monitor learnt of one station from its status and stats."""

    online_at: float | None = None
    run: str | None = None
    version: str | None = None  # the model version of its latest status
    final: dict | None = None  # the run's last stats ("stale": true)


class Monitor(_Subscriber):
    """Follows ``<prefix>/+/status`` and ``<prefix>/+/stats``: when each station came online, its final stats."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.stations: dict[str, StationSeen] = {}
        self.probed = threading.Event()
        self._prefix_len = len(prefix) + 1
        super().__init__(broker, "edge-ad-bench-monitor", [f"{prefix}/+/status", f"{prefix}/+/stats"])

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        station, _, leaf = msg.topic[self._prefix_len :].partition("/")
        if station == PROBE:
            self.probed.set()
            return
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        seen = self.stations.setdefault(station, StationSeen())
        if leaf == "status" and isinstance(payload.get("model"), dict):
            seen.version = payload["model"].get("version")
        if leaf == "status" and payload.get("state") == "online" and seen.online_at is None:
            seen.online_at, seen.run = time.time(), payload.get("run")
        elif leaf == "stats" and payload.get("stale"):
            seen.final = payload

    def online(self, stations: list[str]) -> bool:
        """Whether every one of ``stations`` has said online."""
        return all(self.stations.get(s, StationSeen()).online_at is not None for s in stations)


@dataclass
class Ticks:
    """CPU time of processes (clock ticks) at one instant."""

    at: float
    ticks: dict[int, int] = field(default_factory=dict)


def cpu_ticks(pids: list[int]) -> Ticks:
    """CPU time (utime + stime) of each of ``pids`` (``/proc/<pid>/stat``); a vanished pid is left out."""
    now = Ticks(time.monotonic())
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            now.ticks[pid] = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return now


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in kB; None once it is gone."""
    rss = hwm = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None if rss is None or hwm is None else (rss, hwm)
