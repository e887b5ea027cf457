"""MQTT publisher: retained status with Last Will, QoS 1 verdicts through a durable spool, answers to requests."""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_ad.config import MqttConfig
from edge_ad.config.secrets import read_secret
from edge_ad.errors import BrokerError, ConfigError
from edge_ad.guard import Guard, RateLimitedLog
from edge_ad.publish.payloads import (
    mark_replayed,
    stats_payload,
    status_payload,
    to_json,
    trigger_error_payload,
    verdict_payload,
    will_payload,
)
from edge_ad.publish.session import (
    UNKNOWN,
    Delivery,
    ReplyRoute,
    connect_options,
    fall_back_to_311,
    first_protocol,
    forget_unacknowledged,
    new_client,
    refused_mqtt5,
    reply_route,
)
from edge_ad.publish.spool import Spool
from edge_ad.publish.topics import Topics
from edge_ad.types import Verdict

__all__ = ["Handler", "MqttPublisher", "configure_security", "connect_tool", "read_password"]

BACKLOG_QUIET_S = 0.25  # a pause this long after the SUBACK ends a resumed session's queued messages

logger = logging.getLogger(__name__)

WINDOW = 100  # spooled messages handed to paho and not yet acknowledged
Handler = Callable[[bytes, Delivery], None]  # an inbound message's payload and what is known about it


def read_password(config: MqttConfig) -> str | None:
    """The broker password from ``password_env`` or ``password_file`` (None without one).

    Raises:
        BrokerError: The variable is unset or the file unreadable.
    """
    try:
        return read_secret("mqtt.password", config.password_env, config.password_file)
    except ConfigError as exc:
        raise BrokerError(str(exc)) from None


def configure_security(client: mqtt.Client, config: MqttConfig) -> None:
    """Username/password and TLS from the config on a paho client (the password is never logged)."""
    if config.username:
        client.username_pw_set(config.username, read_password(config))
    if config.tls is not None:
        for key, path in (("ca", config.tls.ca), ("cert", config.tls.cert), ("key", config.tls.key)):
            if path is not None and not path.is_file():
                raise BrokerError(f"mqtt.tls.{key}: {path} not found")
        try:
            client.tls_set(
                ca_certs=str(config.tls.ca),
                certfile=str(config.tls.cert) if config.tls.cert else None,
                keyfile=str(config.tls.key) if config.tls.key else None,
            )
        except (ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"mqtt.tls: cannot load the certificates ({exc})") from None


def connect_tool(
    config: MqttConfig,
    on_connect: Callable[..., None],
    on_message: Callable[..., None],
    on_subscribe: Callable[..., None] | None = None,
) -> mqtt.Client:
    """A short-lived client for a command-line tool, connected and looping (disconnect and loop_stop it).

    Raises:
        BrokerError: The broker is not reachable (one line, with what to check).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    configure_security(client, config)
    client.on_connect, client.on_message, client.on_subscribe = on_connect, on_message, on_subscribe
    try:
        client.connect(config.host, config.port, keepalive=10)
    except OSError as exc:
        raise BrokerError(
            f"mqtt: broker {config.host}:{config.port} not reachable ({exc.strerror or exc}); "
            "check mqtt.host/port and that mosquitto runs"
        ) from None
    client.loop_start()
    return client


class MqttPublisher:
    """Publishes one station's status and verdicts, and answers what it receives.

    The Last Will (retained, QoS 1) says ``offline`` / ``connection lost`` for this ``run``; every
    (re)connect republishes the current status; :meth:`stop` publishes ``offline`` / ``stopped`` (or
    the given reason). Verdicts and trigger ERRORs go through a :class:`Spool`: written to disk first,
    sent oldest first by a sender thread while connected, deleted on the broker's PUBACK. After a
    reconnect everything not yet acknowledged is sent again (at-least-once; consumers de-duplicate by
    seq), marked ``replayed``. With MQTT 5 an answer is also sent to its request's Response Topic.

    Args:
        config: The ``mqtt`` config section.
        station: Station name (second topic level).
        spool: Durable outbox; default an in-memory one (nothing survives a restart).
        handlers: Topic -> callback (network thread) with the payload of every message on it and its
            :class:`Delivery`; the topics are subscribed with QoS 1 on every connect. Retained messages are
            commands or triggers from the past: they are ignored and counted (``retained_ignored``).
        guard: Runs every paho callback, so that no exception can end paho's network thread.
        run: Id of this daemon run, in every message (birth, death, verdicts, stats).
        stats_expiry_s: MQTT 5: Message Expiry Interval of the retained stats (the broker drops them when the
            station stops refreshing them, e.g. after a kill); None: no expiry (MQTT 3.1.1 has none).
    """

    def __init__(
        self,
        config: MqttConfig,
        station: str,
        spool: Spool | None = None,
        handlers: dict[str, Handler] | None = None,
        guard: Guard | None = None,
        run: str | None = None,
        stats_expiry_s: int | None = None,
    ) -> None:
        self.config = config
        self.stats_expiry_s = stats_expiry_s
        self.guard = guard or Guard()
        self.retained_ignored = 0
        self.station = station
        self.run = run
        self.topics = Topics(station=station, prefix=config.prefix)
        self.spool = spool if spool is not None else Spool(Path(":memory:"))  # an empty Spool is falsy
        self._status: dict[str, Any] = status_payload(station, "online", run=run)
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> spool row id
        self._early_acks: set[int] = set()  # PUBACKs that arrived before publish() returned the mid
        self._sent_upto = 0  # highest spool id handed to paho on this connection
        self._replay_upto = 0  # spool ids up to this were waiting at the latest connect: sent marked replayed
        self._backlog = False  # a resumed session still handing over what it queued while we were away
        self._subacked_at: float | None = None  # when the broker acknowledged this connection's SUBSCRIBE
        self._last_inbound = 0.0  # the last queued message of the backlog
        self._subscribe_mid: int | None = None
        self._lost_at: float | None = None  # when this process last lost the broker
        self._routes = RateLimitedLog(logger)
        self._protocol = first_protocol(config)  # of the next CONNECT; auto falls back to 3.1.1 once
        self.protocol: str | None = None  # of the latest accepted connection
        self.client = new_client(config, config.client_id or f"edge-ad-{station}")
        configure_security(self.client, config)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(self.topics.status(), to_json(will_payload(station, run)), qos=1, retain=True)
        self.client.suppress_exceptions = True  # second layer: paho logs what would escape the guard
        self.client.on_connect = self.guard.wrap("mqtt connect", self._on_connect)
        self.client.on_disconnect = self.guard.wrap("mqtt disconnect", self._on_disconnect)
        self.client.on_publish = self.guard.wrap("mqtt publish ack", self._on_publish)
        self.client.on_subscribe = self.guard.wrap("mqtt subscribe ack", self._on_subscribe)
        self.handlers = dict(handlers or {})
        for topic, handler in self.handlers.items():
            where = f"mqtt message on {topic}"
            self.client.message_callback_add(topic, self.guard.wrap(where, self._inbound(handler)))
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    def _inbound(self, handler: Handler) -> Callable[..., None]:
        def deliver(client, userdata, msg) -> None:
            now = time.time()
            with self._lock:
                if msg.retain:  # sent before we subscribed: a command must never run again at every restart
                    self.retained_ignored += 1
                    return
                queued, lost_at = self._in_backlog(now), self._lost_at
            sent_at = (lost_at or UNKNOWN) if queued else now  # queued: sent while we were away
            handler(msg.payload, Delivery(sent_at, self._route(msg)))

        return deliver

    def _in_backlog(self, now: float) -> bool:
        """Whether a message arriving now was queued by the broker while we were away (lock held).

        A resumed session's queue arrives before the SUBACK and, beyond the broker's in-flight window
        (mosquitto: 20), back to back after it. The backlog ends with the first pause of
        ``BACKLOG_QUIET_S`` after the SUBACK: a live trigger arriving within it is taken as queued
        (answered ``expired`` if the outage was long), never the other way round.
        """
        if not self._backlog:
            return False
        if self._subacked_at is not None and now - max(self._subacked_at, self._last_inbound) > BACKLOG_QUIET_S:
            self._backlog = False
            return False
        self._last_inbound = now
        return True

    def _route(self, msg: mqtt.MQTTMessage) -> ReplyRoute | None:
        if self._protocol != "5":
            return None
        route, problem = reply_route(msg, self.topics)
        if problem:
            self._routes.warning(
                problem, "mqtt message on %s: %s; answered on the station's topics only", msg.topic, problem
            )
        return route

    # paho callbacks (network thread); paho holds its own locks here, so never call publish() under ours
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if self._protocol == "5" and refused_mqtt5(self.config, reason_code):
                fall_back_to_311(client, self.config)
                self._protocol = "3.1.1"
                logger.warning(
                    "broker %s:%d does not speak MQTT 5 (%s); using MQTT 3.1.1 (mqtt.protocol: auto)",
                    self.config.host,
                    self.config.port,
                    reason_code,
                )
                return
            logger.error("broker %s:%d refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        self.protocol = self._protocol
        resumed = bool(getattr(flags, "session_present", False))
        logger.info(
            "broker %s:%d connected, MQTT %s (%d spooled verdicts%s)",
            self.config.host,
            self.config.port,
            self.protocol,
            len(self.spool),
            ", session resumed" if resumed else "",
        )
        forget_unacknowledged(client, self.topics.verdict())  # the spool resends them, marked replayed
        waiting = self.spool.last_id()
        with self._lock:
            status = to_json(self._status)
            self._inflight.clear()
            self._early_acks.clear()
            self._sent_upto = 0  # resend everything not acknowledged, oldest first
            self._replay_upto = waiting
            self._backlog = resumed and bool(self.handlers)
            self._subacked_at, self._last_inbound = None, 0.0
        client.publish(self.topics.status(), status, qos=1, retain=True)
        if self.handlers:
            _, mid = client.subscribe([(topic, 1) for topic in self.handlers])
            with self._lock:
                self._subscribe_mid = mid
        self._connected.set()
        self._wake.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._lock:
            if mid != self._subscribe_mid:
                return
            self._subacked_at = time.time()  # the queue drains on; the first pause ends the backlog
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            logger.error("broker refused the subscription to %s: %s", ", ".join(self.handlers), ", ".join(refused))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            with self._lock:
                self._lost_at = time.time()
            if not self._closing.is_set():
                logger.warning("broker connection lost (%s); reconnecting, verdicts are spooled", reason_code)
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            row = self._inflight.pop(mid, None)
            if row is None:
                self._early_acks.add(mid)
        if row is not None:
            self.spool.ack(row)
        self._wake.set()

    def _send_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self.guard.call("mqtt sender", self._send_pending) is None:
                time.sleep(0.5)  # it failed (e.g. the spool's disk): try again, without spinning

    def _send_pending(self) -> bool:
        """Hand spooled verdicts to paho while connected (True: done for now)."""
        if not self._connected.is_set():
            return True
        with self._lock:
            room, after, replayed = WINDOW - len(self._inflight), self._sent_upto, self._replay_upto
        if room <= 0:
            return True
        for row, topic, payload, qos, retain in self.spool.pending(after, room):
            if row <= replayed:  # it waited out an outage or a restart
                payload = mark_replayed(payload)
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return True  # disconnected meanwhile; the row stays spooled
            with self._lock:
                self._sent_upto = row
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    acked = True
                else:
                    self._inflight[info.mid] = row
                    acked = False
            if acked:
                self.spool.ack(row)
        return True

    def start(self, wait: bool = True) -> bool:
        """Connect in the background; optionally wait up to ``connect_timeout_s`` for the first connection.

        Returns:
            Whether the broker is connected.
        """
        self.client.connect_async(
            self.config.host, self.config.port, keepalive=self.config.keepalive_s, **connect_options(self.config)
        )
        self.client.loop_start()
        self._sender.start()
        if wait and not self._connected.wait(self.config.connect_timeout_s):
            logger.warning(
                "broker %s:%d not reachable after %.0f s; running anyway, verdicts are spooled until it is",
                self.config.host,
                self.config.port,
                self.config.connect_timeout_s,
            )
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """Whether the threads that deliver verdicts still run (paho's network thread and the sender).

        paho exposes its thread only privately; a client that was never started counts as alive.
        """
        network = getattr(self.client, "_thread", None)
        started = self._sender.ident is not None
        return not started or (self._sender.is_alive() and (network is None or network.is_alive()))

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        return self._connected.is_set()

    @property
    def unacknowledged(self) -> int:
        """Verdicts the broker has not acknowledged yet (spooled)."""
        return len(self.spool)

    def set_status(self, state: str, reason: str = "", **details: Any) -> mqtt.MQTTMessageInfo | None:
        """Replace the retained status and publish it now (or on the next connect)."""
        with self._lock:
            self._status = status_payload(self.station, state, reason, run=self.run, **details)  # type: ignore[arg-type]
            status = to_json(self._status)
        if self._connected.is_set():
            return self.client.publish(self.topics.status(), status, qos=1, retain=True)
        return None

    def publish_stats(self, fields: dict[str, Any], final: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish the retained statistics (QoS 1; skipped while disconnected: the next one follows).

        Args:
            fields: The figures.
            final: The run's last stats, at a clean stop: marked ``"stale": true`` and kept without expiry.
                Others carry MQTT 5's Message Expiry Interval (``stats_expiry_s``), so a broker drops them
                when the station stops refreshing them without saying so (a kill).
        """
        if not self._connected.is_set():
            return None
        payload = stats_payload(self.station, fields | ({"stale": True} if final else {}), run=self.run)
        props = None
        if self.stats_expiry_s and not final and self._protocol == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = self.stats_expiry_s
        return self.client.publish(self.topics.stats(), to_json(payload), qos=1, retain=True, properties=props)

    def publish_event(self, topic: str, payload: dict[str, Any], route: ReplyRoute | None = None) -> None:
        """Publish a small JSON message, and a copy to ``route`` (QoS 1, not retained; dropped while disconnected)."""
        if self._connected.is_set():
            self.client.publish(topic, to_json(payload), qos=1)
        if route is not None:
            self.respond(route, payload)

    def publish_verdict(self, verdict: Verdict) -> None:
        """Spool one verdict (QoS from config, never retained); the sender thread delivers it."""
        payload = to_json(verdict_payload(verdict, self.station, self.run))
        self.spool.append(self.topics.verdict(), payload, qos=self.config.qos, seq=verdict.seq)
        self._wake.set()

    def publish_trigger_error(self, part: str | int, error: str, reason: str, route: ReplyRoute | None = None) -> None:
        """Answer a trigger that gets no verdict: ERROR on the verdict topic (spooled, in order with verdicts)."""
        payload = trigger_error_payload(self.station, self.run, part, error, reason)
        self.spool.append(self.topics.verdict(), to_json(payload), qos=self.config.qos)
        self._wake.set()
        if route is not None:
            self.respond(route, payload)

    def respond_verdict(self, route: ReplyRoute, verdict: Verdict) -> None:
        """Send the verdict that answers a trigger to the trigger's Response Topic as well."""
        self.respond(route, verdict_payload(verdict, self.station, self.run))

    def respond(self, route: ReplyRoute, payload: dict[str, Any]) -> None:
        """MQTT 5: a copy of an answer to its request's Response Topic, with the request's Correlation Data.

        QoS 1, not retained, not spooled: dropped while disconnected (the station's own topic has the answer).
        """
        if self._connected.is_set():
            self.client.publish(route.topic, to_json(payload), qos=1, properties=route.properties())

    def stop(self, reason: str = "stopped", timeout_s: float = 10.0) -> None:
        """Flush spooled verdicts (up to ``timeout_s``), publish the final status, disconnect."""
        deadline = time.monotonic() + timeout_s
        while len(self.spool) and self._connected.is_set() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        state = "error" if reason not in ("stopped", "source exhausted") else "offline"
        info = self.set_status(state, reason)
        if info is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
        left = len(self.spool)
        if left:
            logger.warning("%d verdict(s) not acknowledged by the broker at shutdown; kept in the spool", left)
        self._closing.set()
        self._wake.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(2)
        self.spool.close()
