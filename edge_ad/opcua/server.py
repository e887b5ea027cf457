"""The OPC UA server: a thread of its own with its own asyncio loop, fed by the daemon and never waited for.

Construct it (reads the passwords; no network, no files written), feed it values from any thread
(:meth:`OpcUaServer.verdict`, :meth:`~OpcUaServer.model`, :meth:`~OpcUaServer.status`,
:meth:`~OpcUaServer.stats`: they record and return), then :meth:`~OpcUaServer.start`. If the server
cannot start (port in use, a certificate it cannot make) it says so in :attr:`~OpcUaServer.alarm` and
tries again (1 s, doubling to 30 s); every handler runs behind the daemon's guard.

``Trigger(Id)`` hands the id to the daemon's trigger queue (the one MQTT triggers wait in) together
with a :class:`PendingCall`, and answers in the same call with the verdict published for it, or a Bad
status code saying why there is none (:data:`edge_ad.opcua.nodes.REFUSALS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509

from edge_ad.config import OpcUaConfig
from edge_ad.errors import first_line
from edge_ad.guard import Guard, RateLimitedLog
from edge_ad.opcua import nodes
from edge_ad.opcua.auth import Logins
from edge_ad.opcua.calls import PendingCall, answer_calls_concurrently, refusal
from edge_ad.opcua.certs import ClientTrust, check_configured_pair, ensure_server_certificate
from edge_ad.service.modes import TriggerRejected, TriggerReply
from edge_ad.types import Verdict

__all__ = ["MAX_WAITING", "AcceptTrigger", "OpcUaServer"]

logger = logging.getLogger(__name__)

AcceptTrigger = Callable[[object, TriggerReply], None]  # raises TriggerRejected
# Trigger calls waiting at once, over all sessions: half of the daemon's trigger queue (TriggerInbox, 64), so
# OPC UA calls can never push out MQTT triggers waiting there; more are refused BadTooManyOperations
MAX_WAITING = 32
POLICIES = {"None": "NoSecurity"}  # config name -> ua.SecurityPolicyType name where they differ


class _OncePerMinute(logging.Filter):
    """asyncua logs every refused request at ERROR: one line per message a minute.

    Its traceback for a failed start is dropped: the server logs that itself, in one line with the cause.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if "error starting server" in str(record.msg):
            return False
        key = (record.name, str(record.msg)[:80])
        now = time.monotonic()
        with self._lock:
            if now - self._seen.get(key, -60.0) < 60.0:
                return False
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = now
        return True


_ONCE = _OncePerMinute()


def _quiet_asyncua() -> None:
    """Run asyncua at WARNING (its INFO logs every method call), each of its messages at most once a minute."""
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    for name in list(logging.Logger.manager.loggerDict):  # filters do not propagate: each of its loggers
        if name == "asyncua" or name.startswith("asyncua."):
            target = logging.getLogger(name)
            if _ONCE not in target.filters:
                target.addFilter(_ONCE)


class _Users(UserManager):
    """asyncua's hook for logins: the configured users (and anonymous sessions only when allowed)."""

    def __init__(self, logins: Logins, allow_anonymous: bool) -> None:
        self.logins = logins
        self.allow_anonymous = allow_anonymous
        self.refused = 0
        self._log = RateLimitedLog(logger)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None):
        if username is None:
            return User(role=UserRole.User) if self.allow_anonymous else None
        if self.logins.check(username, password):
            return User(role=UserRole.User, name=username)
        self.refused += 1
        self._log.warning("login refused", "opcua: login refused for user %r: unknown name or wrong password", username)
        return None


def _argument(name: str, type_name: str, description: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(getattr(ua.ObjectIds, type_name))
    arg.ValueRank = -1
    arg.ArrayDimensions = []
    arg.Description = ua.LocalizedText(description)
    return arg


def _variant(value: Any, type_name: str) -> ua.Variant:
    if type_name == "DateTime":
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    return ua.Variant(value, getattr(ua.VariantType, type_name))


class OpcUaServer:
    """The station's OPC UA server (namespace ``urn:edge_ad:<station>``, object ``Station``).

    Args:
        config: The ``opcua`` section.
        station: Station name (namespace and application URIs).
        state_dir: ``service.state_dir``; the server certificate is kept in ``<state_dir>/opcua/``.
        accept_trigger: Queues a trigger id with its reply, or raises :class:`TriggerRejected`
            (the daemon's; None: this station takes no triggers).
        answer_timeout_s: How long a ``Trigger`` call waits for its verdict before ``BadTimeout``.
        guard: Counts and logs what a handler raises (the daemon's ``faults``); the server goes on.
        on_alarm: Called (from the server's thread) when :attr:`alarm` changes.
        retry_s: First and longest wait before another attempt to start (doubling in between).

    Raises:
        ConfigError: A password or the configured certificate cannot be read.
    """

    def __init__(
        self,
        config: OpcUaConfig,
        station: str,
        state_dir: Path,
        accept_trigger: AcceptTrigger | None = None,
        answer_timeout_s: float = 7.0,
        guard: Guard | None = None,
        on_alarm: Callable[[], None] | None = None,
        retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.config = config
        self.station = station
        self.state_dir = state_dir
        self.accept_trigger = accept_trigger
        self.answer_timeout_s = answer_timeout_s
        self.guard = guard or Guard()
        self.on_alarm = on_alarm
        self._users = _Users(Logins(config.users), config.allow_anonymous)
        if config.certificate is not None and config.private_key is not None:
            check_configured_pair(config.certificate, config.private_key)
        self._trust = ClientTrust(config.trusted_clients, state_dir / "opcua" / "rejected")
        self._retry_min, self._retry_max = retry_s
        self.alarm: str | None = None
        self.listening = False
        self.calls = 0
        self.answered = 0
        self.refused = 0
        self._server: Server | None = None
        self._ids: dict[str, ua.NodeId] = {}
        self._lock = threading.Lock()
        self._values: dict[str, tuple[Any, float]] = {v.name: (v.initial, time.time()) for v in nodes.VARIABLES}
        self._dirty: set[str] = set()
        self._kicked = False
        self._frames = self._ok = self._ng = 0
        self._pending: set[PendingCall] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._log = RateLimitedLog(logger)
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)

    # values: any thread, never blocks
    def verdict(self, verdict: Verdict) -> None:
        """One published verdict: last verdict, score, seq, ... and the counters."""
        with self._lock:
            self._frames += 1
            self._ng += verdict.verdict == "NG"
            self._ok = self._frames - self._ng
            counters = {"Counters.Frames": self._frames, "Counters.OK": self._ok, "Counters.NG": self._ng}
        self._record({**nodes.verdict_values(verdict), **counters}, verdict.ts)

    def model(self, model: Mapping[str, str], threshold: float) -> None:
        """The model that judges (at start and after a swap)."""
        self._record(nodes.model_values(model, threshold))

    def status(self, state: str, reason: str = "", details: Mapping[str, Any] | None = None) -> None:
        """The station's state, as on the MQTT status (its alarm details become ``Alarm``)."""
        self._record(nodes.status_values(state, reason, details or {}))

    def stats(self, snapshot: Mapping[str, Any], errors: int) -> None:
        """The rolling statistics and the count of errors caught."""
        self._record(nodes.stats_values(snapshot, errors))

    def value(self, name: str) -> Any:
        """The latest value recorded for variable ``name`` (what a client reads once it is written)."""
        with self._lock:
            return self._values[name][0]

    def counters(self) -> dict[str, Any]:
        """For the JSON stats: listening, sessions, Trigger calls answered and refused, logins refused."""
        server = self._server
        sessions = len(server.bserver.clients) if server is not None and server.bserver is not None else 0
        return {
            "listening": self.listening,
            "sessions": sessions,
            "calls": self.calls,
            "answered": self.answered,
            "refused": self.refused,
            "logins_refused": self._users.refused,
        }

    # lifecycle: the daemon's thread
    def start(self) -> None:
        """Serve in the background (and keep trying when serving fails)."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Answer waiting calls with ``BadShutdown``, stop serving and end the thread (waits up to ``timeout_s``)."""
        self._stop_requested.set()
        self._in_loop(self._close)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # the server's thread
    def _record(self, values: Mapping[str, Any], ts: float | None = None) -> None:
        stamp = time.time() if ts is None else ts
        with self._lock:
            for name, value in values.items():
                self._values[name] = (value, stamp)
                self._dirty.add(name)
            kick, self._kicked = not self._kicked, True
        if kick:
            self._in_loop(self._wake_up)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(fn)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        self._wake_up()
        for call in list(self._pending):
            call.lost(TriggerRejected("stopping", "the station is stopping"))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(loop))
        except Exception as exc:  # a bug in the supervision itself: the server is gone, verdicts go on
            self.guard.record("opcua", exc)
            self._set_alarm(f"opcua: server thread ended: {type(exc).__name__}: {first_line(exc)}")
        finally:
            self.listening = False
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake, self._closing = asyncio.Event(), asyncio.Event()
        self._loop = loop
        if self._stop_requested.is_set():
            return
        _quiet_asyncua()
        retry = self._retry_min
        while not self._closing.is_set():
            try:
                await self._serve()
            except Exception as exc:  # port in use, certificate, asyncua: alarm and try again
                message = (
                    f"opcua: cannot serve {self.config.endpoint}: {type(exc).__name__}: {first_line(exc)}; "
                    f"next attempt in {retry:.0f} s"
                )
                self._log.warning("cannot serve", "%s", message)
                self._set_alarm(message)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), retry)
                retry = min(retry * 2, self._retry_max)
            else:
                retry = self._retry_min

    async def _serve(self) -> None:
        answer_calls_concurrently()  # a waiting Trigger must not hold up the client's other requests
        server = Server(user_manager=self._users)
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_server_name(f"edge_ad {self.station}")
        server.product_uri = "urn:edge_ad"
        server.manufacturer_name = "edge_ad"
        await server.set_application_uri(nodes.application_uri(self.station))
        cert, key = self._certificate()
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy(
            [getattr(ua.SecurityPolicyType, POLICIES.get(p, p)) for p in self.config.security_policies]
        )
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.config.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(self._validate)
        server.iserver.max_connections = self.config.max_sessions
        idx = await server.register_namespace(nodes.namespace_uri(self.station))
        self._ids = await self._build(server, idx)
        await server.start()
        _quiet_asyncua()  # again: the server's sessions made loggers of their own
        self._server = server
        try:
            self.listening = True
            logger.info(
                "opcua: serving %s (namespace %s = ns=%d; %s)",
                self.config.endpoint,
                nodes.namespace_uri(self.station),
                idx,
                ", ".join(self.config.security_policies),
            )
            self._set_alarm(None)
            with self._lock:
                self._dirty.update(self._values)  # a new address space: everything known so far
            await self._pump(server)
        finally:
            self.listening = False
            for call in list(self._pending):
                call.lost(TriggerRejected("stopping", "the station is stopping"))
            await asyncio.sleep(0.1)  # let the answers go out
            await server.stop()
            self._server = None

    def _certificate(self) -> tuple[Path, Path]:
        if self.config.certificate is not None and self.config.private_key is not None:
            return self.config.certificate, self.config.private_key
        host = self.config.host
        hostnames = [host] if host not in ("0.0.0.0", "::", "") else []
        return ensure_server_certificate(self.state_dir / "opcua", nodes.application_uri(self.station), hostnames)

    async def _validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        problem = self._trust.check(cert)
        if problem is not None:
            self._log.warning("untrusted", "opcua: client %s refused: %s", app.ApplicationUri, problem)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def _build(self, server: Server, idx: int) -> dict[str, ua.NodeId]:
        station = await server.nodes.objects.add_object(ua.NodeId(nodes.ROOT, idx), ua.QualifiedName(nodes.ROOT, idx))
        await station.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(f"edge_ad inspection station {self.station}"))),
        )
        parents = {"": station}
        for folder in nodes.FOLDERS:
            parents[folder] = await station.add_object(
                ua.NodeId(nodes.node_id(folder), idx), ua.QualifiedName(folder, idx)
            )
        ids = {}
        for var in nodes.VARIABLES:
            parent, _, leaf = var.name.rpartition(".")
            node = await parents[parent].add_variable(
                ua.NodeId(nodes.node_id(var.name), idx), ua.QualifiedName(leaf, idx), _variant(var.initial, var.type)
            )
            await node.write_attribute(
                ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(var.description)))
            )
            ids[var.name] = node.nodeid
        await station.add_method(
            ua.NodeId(nodes.node_id(nodes.TRIGGER), idx),
            ua.QualifiedName(nodes.TRIGGER, idx),
            self._trigger,
            [_argument(*a) for a in nodes.INPUTS],
            [_argument(*a) for a in nodes.OUTPUTS],
        )
        return ids

    async def _pump(self, server: Server) -> None:
        """Write what the daemon recorded into the address space, until closing."""
        assert self._wake is not None and self._closing is not None
        types = {v.name: v.type for v in nodes.VARIABLES}
        while True:
            self._wake.clear()
            with self._lock:
                items = [(name, self._values[name]) for name in sorted(self._dirty)]
                self._dirty.clear()
                self._kicked = False
            for name, (value, ts) in items:
                stamp = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
                data = ua.DataValue(_variant(value, types[name]), SourceTimestamp=stamp, ServerTimestamp=stamp)
                try:
                    await server.write_attribute_value(self._ids[name], data)
                except Exception as exc:
                    self.guard.record("opcua update", exc)
            if self._closing.is_set():
                return
            await self._wake.wait()

    async def _trigger(self, parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.CallMethodResult:
        try:
            return await self._answer(args)
        except Exception as exc:  # a bug here must not end the session or the server
            self.guard.record("opcua Trigger", exc)
            return refusal(ua.StatusCodes.BadInternalError, f"BadInternalError: {exc!r} (see the station log)")

    async def _answer(self, args: tuple[ua.Variant, ...]) -> list[ua.Variant] | ua.CallMethodResult:
        self.calls += 1
        if len(args) != 1:
            code = ua.StatusCodes.BadArgumentsMissing if not args else ua.StatusCodes.BadTooManyArguments
            wrong = TriggerRejected("invalid", f"Trigger takes one argument (Id), got {len(args)}")
            return self._refuse("", wrong, code)
        part = args[0].Value if isinstance(args[0], ua.Variant) else args[0]
        if self.accept_trigger is None:
            return self._refuse(part, TriggerRejected("mode", "this station takes no triggers"))
        if len(self._pending) >= MAX_WAITING:  # OPC UA's share of the trigger queue: MQTT triggers keep the rest
            busy = TriggerRejected("dropped", f"{MAX_WAITING} OPC UA Trigger calls already waiting for a frame")
            return self._refuse(part, busy, ua.StatusCodes.BadTooManyOperations)
        call = PendingCall(asyncio.get_running_loop())
        self._pending.add(call)
        try:
            try:
                self.accept_trigger(part, call)
            except TriggerRejected as exc:
                return self._refuse(part, exc)
            try:
                outcome = await asyncio.wait_for(asyncio.shield(call.future), self.answer_timeout_s)
            except asyncio.TimeoutError:
                call.withdrawn = True
                outcome = TriggerRejected(
                    "expired", f"no verdict within {self.answer_timeout_s:.1f} s (no frame captured in time?)"
                )
        finally:
            self._pending.discard(call)
        if isinstance(outcome, TriggerRejected):
            return self._refuse(part, outcome)
        self.answered += 1
        outputs = nodes.trigger_outputs(str(part), outcome)
        return [_variant(value, type_name) for value, (_, type_name, _) in zip(outputs, nodes.OUTPUTS, strict=True)]

    def _refuse(self, part: object, rejected: TriggerRejected, code: int | None = None) -> ua.CallMethodResult:
        """The Bad answer, its reason in the call's diagnostics (when asked) and in ``LastTriggerError``."""
        self.refused += 1
        name = ua.StatusCode(code).name if code is not None else nodes.REFUSALS[rejected.kind]
        shown = str(part)[:64] if isinstance(part, (str, int)) else type(part).__name__
        reason = f"{name}: {shown}: {rejected.reason}"
        self._record({"LastTriggerError": reason})
        self._log.warning(f"refused {rejected.kind}", "opcua: Trigger %r: %s (%s)", shown, rejected.reason, name)
        return refusal(code if code is not None else getattr(ua.StatusCodes, name), reason)

    def _set_alarm(self, message: str | None) -> None:
        if message == self.alarm:
            return
        if message is None:
            logger.info("opcua: alarm cleared")
        self.alarm = message
        if self.on_alarm is not None:
            self.guard.call("opcua alarm", self.on_alarm)
