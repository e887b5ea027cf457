"""One MQTT connection to many stations: their retained status and stats, signed commands, and the replies.

Commands are signed per station with that station's own ``commands`` key (the authorisation of
``edge-ad command recalibrate``); keys come from ``--keys DIR`` (``<station>.key``) or one ``--key FILE``
and are never printed.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_ad.config import MqttConfig
from edge_ad.errors import BrokerError, EdgeAdError
from edge_ad.publish.client import connect_tool
from edge_ad.service.command_auth import MIN_KEY_LENGTH, sign_command

__all__ = ["FleetLink", "load_keys", "read_key"]

LEAVES = ("status", "stats", "cmd/install/result", "cmd/rollback/result")


def read_key(path: Path, what: str) -> bytes:
    """The command key in the first line of ``path``.

    Raises:
        EdgeAdError: Unreadable, or shorter than 32 characters.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise EdgeAdError(f"{what}: cannot read {path} ({reason})") from None
    key = lines[0].strip() if lines else ""
    if len(key) < MIN_KEY_LENGTH:
        raise EdgeAdError(
            f"{what}: {path} holds a key of {len(key)} characters, needs at least {MIN_KEY_LENGTH} "
            "(the station's commands.secret_file)"
        )
    return key.encode()


def load_keys(stations: list[str], keys_dir: Path | None = None, key_file: Path | None = None) -> dict[str, bytes]:
    """Each station's command key: ``keys_dir/<station>.key``, else the one key in ``key_file``.

    Raises:
        EdgeAdError: A station has no key (before anything is sent), or a key file is unusable.
    """
    common = read_key(key_file, "--key") if key_file is not None else None
    keys: dict[str, bytes] = {}
    missing = []
    for station in stations:
        path = keys_dir / f"{station}.key" if keys_dir is not None else None
        if path is not None and path.is_file():
            keys[station] = read_key(path, "--keys")
        elif common is not None:
            keys[station] = common
        else:
            missing.append(station)
    if missing:
        where = f"no {missing[0]}.key in {keys_dir}" if keys_dir is not None else "no --keys DIR or --key FILE given"
        raise EdgeAdError(
            f"no command key for {', '.join(missing)} ({where}); nothing was sent: give each station's "
            "commands key as --keys DIR/<station>.key or --key FILE"
        )
    return keys


class FleetLink:
    """A tool's MQTT connection to every station under ``prefix``: latest status and stats, replies by command id.

    Subscribes to ``<prefix>/+/status``, ``+/stats``, ``+/cmd/install/result`` and ``+/cmd/rollback/result``;
    the broker's retained status and stats arrive at once. Call :meth:`close` when done.

    Raises:
        BrokerError: The broker is unreachable or refused the connection or the subscriptions.
    """

    def __init__(self, config: MqttConfig, prefix: str, connect_timeout_s: float = 10.0) -> None:
        self.config = config
        self.prefix = prefix
        self.status: dict[str, dict] = {}
        self.stats: dict[str, dict] = {}
        self.sent: dict[str, str] = {}  # command id -> station
        self._replies: dict[str, list[dict]] = {}
        self._changed = threading.Condition()
        self._last_message = time.monotonic()
        ready: queue.Queue[str | None] = queue.Queue()
        topics = [(f"{prefix}/+/{leaf}", 1) for leaf in LEAVES]

        def on_connect(c, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                ready.put(str(reason_code))
                return
            c.subscribe(topics)

        def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
            refused = [str(code) for code in reason_codes if code.is_failure]
            ready.put(f"subscription refused ({', '.join(refused)}); check the broker's ACL" if refused else None)

        self.client = connect_tool(config, on_connect, self._on_message, on_subscribe)
        try:
            problem = ready.get(timeout=connect_timeout_s)
        except queue.Empty:
            problem = f"no answer within {connect_timeout_s:.0f} s"
        if problem:
            self.close()
            raise BrokerError(f"mqtt: broker {config.host}:{config.port}: {problem}")

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        head = self.prefix.split("/")
        if parts[: len(head)] != head or len(parts) < len(head) + 2:
            return
        station, leaf = parts[len(head)], "/".join(parts[len(head) + 1 :])
        try:
            payload = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        with self._changed:
            if leaf == "status":
                if isinstance(payload, dict):
                    self.status[station] = payload
                else:
                    self.status.pop(station, None)  # a cleared retained status: the station is gone
            elif leaf == "stats":
                if isinstance(payload, dict):
                    self.stats[station] = payload
                else:
                    self.stats.pop(station, None)
            elif isinstance(payload, dict) and self.sent.get(str(payload.get("id"))) == station:  # on its own topic
                self._replies.setdefault(payload["id"], []).append(payload)
            self._last_message = time.monotonic()
            self._changed.notify_all()

    def settle(self, quiet_s: float = 0.5, limit_s: float = 5.0) -> None:
        """Wait until the retained messages have arrived: ``quiet_s`` without a new one (at most ``limit_s``)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with self._changed:
                if time.monotonic() - self._last_message >= quiet_s:
                    return
            time.sleep(0.05)

    def wait(self, timeout_s: float) -> None:
        """Sleep until a new message arrives or ``timeout_s`` passes."""
        with self._changed:
            self._changed.wait(max(0.0, timeout_s))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` (checked after every message) is true, or ``timeout_s``; its last value."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wait(min(left, 0.5))
        return True

    def replies(self, command_id: str) -> list[dict]:
        """The replies to ``command_id`` so far, in arrival order."""
        with self._changed:
            return list(self._replies.get(command_id, []))

    def snapshot(self, station: str) -> tuple[dict | None, dict | None]:
        """The latest (status, stats) of ``station``."""
        with self._changed:
            return self.status.get(station), self.stats.get(station)

    def send(self, station: str, name: str, command: dict[str, Any], key: bytes) -> None:
        """Sign ``command`` (it has its ``id``) with ``key`` and publish it on ``<prefix>/<station>/cmd/<name>``.

        Raises:
            BrokerError: The broker did not take it within 10 s.
        """
        with self._changed:
            self.sent[command["id"]] = station
        info = self.client.publish(f"{self.prefix}/{station}/cmd/{name}", sign_command(command, key), qos=1)
        try:
            info.wait_for_publish(10)
        except (RuntimeError, ValueError) as exc:
            raise BrokerError(f"mqtt: could not send cmd/{name} to {station} ({exc}); check the broker") from None
        if not info.is_published():
            raise BrokerError(f"mqtt: cmd/{name} to {station} not acknowledged within 10 s; check the broker")

    @staticmethod
    def new_id(rollout: str) -> str:
        """A fresh command id within ``rollout``."""
        return f"{rollout}.{secrets.token_hex(3)}"

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
