"""``edge-ad command``: send a signed command to a station over MQTT and follow its replies."""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Iterator
from typing import Any

from edge_ad.config import EdgeAdConfig
from edge_ad.errors import BrokerError
from edge_ad.publish.client import connect_tool
from edge_ad.publish.topics import Topics
from edge_ad.service.command_auth import command_key, sign_command

__all__ = ["FINAL_STATES", "send_command"]

FINAL_STATES = frozenset({"passed", "failed", "error", "rejected", "installed", "rolled_back"})


def send_command(config: EdgeAdConfig, name: str, command: dict[str, Any], timeout_s: float) -> Iterator[dict]:
    """Sign ``command`` with the station's key, publish it on ``cmd/<name>`` and yield its replies.

    Stops after a final reply (:data:`FINAL_STATES`) or ``timeout_s`` without one.

    Raises:
        BrokerError: The broker is unreachable or refused the connection.
        ConfigError: No usable command key in the config.
    """
    key = command_key(config.commands)
    topics = Topics(config.station, config.mqtt.prefix)
    command = {"id": f"cli-{secrets.token_hex(4)}", **command}
    replies: queue.Queue[dict] = queue.Queue()
    subscribed = queue.Queue[str | None]()

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            subscribed.put(str(reason_code))
            return
        c.subscribe(topics.command_result(name), qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        subscribed.put(None)

    def on_message(c, userdata, msg) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(reply, dict) and reply.get("id") == command["id"]:  # the station echoes it, even unsigned
            replies.put(reply)

    client = connect_tool(config.mqtt, on_connect, on_message, on_subscribe)
    try:
        try:
            refused = subscribed.get(timeout=10)
        except queue.Empty:
            raise BrokerError(f"mqtt: no answer from {config.mqtt.host}:{config.mqtt.port} within 10 s") from None
        if refused:
            raise BrokerError(f"mqtt: broker {config.mqtt.host}:{config.mqtt.port} refused: {refused}")
        client.publish(topics.command(name), sign_command(command, key), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = replies.get(timeout=left)
            except queue.Empty:
                break
            yield reply
            if reply.get("state") in FINAL_STATES:
                return
            deadline = time.monotonic() + timeout_s  # progress: wait again
    finally:
        client.disconnect()
        client.loop_stop()
