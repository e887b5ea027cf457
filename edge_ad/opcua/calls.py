"""Trigger calls in the server's loop: the reply the daemon settles, and calls that never hold up a connection.

asyncua's server handles one connection's requests one after another. A ``Trigger`` call waits for
its frame (up to ``service.trigger_timeout_s`` plus ``opcua.answer_margin_s``), and meanwhile that
client's keep-alive reads and publish requests would wait too: asyncua's own client gives up on a
server that does not answer its 1 s probe, and a PLC may likewise drop the session. So Call requests
run as tasks of their own (at most :data:`MAX_CALLS` per connection; beyond that they queue as
before) and every other request is answered meanwhile; OPC UA lets responses come in any order.

A refused call's reason travels in the same answer: asyncua returns a method's Bad status without
diagnostics, so a handler answers with :func:`refusal` and, when the request header asks for operation
diagnostics (``ReturnDiagnostics`` bit ``0x40`` localized text or ``0x80`` additional info, OPC UA
Part 4 7.12/7.32), the CallResponse carries one ``DiagnosticInfo`` per result with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.server import binary_server_asyncio
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

from edge_ad.service.modes import TriggerRejected
from edge_ad.types import Verdict

__all__ = ["MAX_CALLS", "PendingCall", "answer_calls_concurrently", "refusal"]

logger = logging.getLogger(__name__)

MAX_CALLS = 64  # the trigger queue's size: more could not be answered anyway
CALL_REQUEST = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)
LOCALIZED_TEXT, ADDITIONAL_INFO = 0x40, 0x80  # RequestHeader.ReturnDiagnostics, operation level


@dataclass
class _Diagnostics:
    """One Call request's wish for diagnostics and the reasons its handlers gave, by result."""

    wanted: int
    reasons: dict[int, str] = field(default_factory=dict)

    def infos(self, response: ua.CallResponse) -> list[ua.DiagnosticInfo]:
        """One DiagnosticInfo per result (empty where there is nothing to say); texts go to the string table."""
        infos = []
        for result in response.Results:
            reason = self.reasons.get(id(result))
            info = ua.DiagnosticInfo()
            if reason is not None and self.wanted & ADDITIONAL_INFO:
                info.AdditionalInfo = reason
            if reason is not None and self.wanted & LOCALIZED_TEXT:
                info.LocalizedText = len(response.ResponseHeader.StringTable)
                response.ResponseHeader.StringTable.append(reason)
            infos.append(info)
        return infos


_DIAGNOSTICS: ContextVar[_Diagnostics | None] = ContextVar("edge_ad_opcua_diagnostics", default=None)


def refusal(code: int, reason: str) -> ua.CallMethodResult:
    """A method's Bad answer whose ``reason`` goes into the response's diagnostics when the client asks."""
    result = ua.CallMethodResult(StatusCode=ua.StatusCode(code))
    diagnostics = _DIAGNOSTICS.get()
    if diagnostics is not None:
        diagnostics.reasons[id(result)] = reason
    return result


class PendingCall:
    """One ``Trigger`` call waiting in the server's loop: the :class:`TriggerReply` the daemon settles.

    Args:
        loop: The server's loop; :meth:`answered` and :meth:`lost` may be called from any thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.future: asyncio.Future[Verdict | TriggerRejected] = loop.create_future()
        self.withdrawn = False  # set by the call when it gives up; the trigger queue then drops it

    def answered(self, verdict: Verdict) -> None:
        """The verdict published for the trigger."""
        self._settle(verdict)

    def lost(self, rejected: TriggerRejected) -> None:
        """The trigger will get no verdict."""
        self._settle(rejected)

    def _settle(self, outcome: Verdict | TriggerRejected) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._set, outcome)

    def _set(self, outcome: Verdict | TriggerRejected) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class _ConcurrentCalls(UaProcessor):
    """asyncua's request processor, with Call requests run as tasks so they do not block the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._calls: set[asyncio.Task[Any]] = set()

    async def process_message(self, seqhdr: Any, body: Any) -> Any:
        wanted = self._call_diagnostics(body)
        if wanted is None:
            return await super().process_message(seqhdr, body)
        if len(self._calls) < MAX_CALLS:
            task = asyncio.create_task(self._call(seqhdr, body, wanted))
            self._calls.add(task)
            task.add_done_callback(self._done)
            return True
        return await self._call(seqhdr, body, wanted)

    async def _call(self, seqhdr: Any, body: Any, wanted: int) -> Any:
        token = _DIAGNOSTICS.set(_Diagnostics(wanted))
        try:
            return await super().process_message(seqhdr, body)
        finally:
            _DIAGNOSTICS.reset(token)

    def send_response(self, requesthandle: Any, seqhdr: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        diagnostics = _DIAGNOSTICS.get()
        asked = diagnostics is not None and diagnostics.wanted & (LOCALIZED_TEXT | ADDITIONAL_INFO)
        if asked and isinstance(response, ua.CallResponse):
            response.DiagnosticInfos = diagnostics.infos(response)
        super().send_response(requesthandle, seqhdr, response, *args, **kwargs)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled() and task.exception() is not None:  # asyncua answers its own errors: a bug
            logger.error("opcua: a call request failed", exc_info=task.exception())

    @staticmethod
    def _call_diagnostics(body: Any) -> int | None:
        """A Call request's ``ReturnDiagnostics`` bits; None for any other request."""
        with contextlib.suppress(Exception):  # unreadable: asyncua answers it as before
            copy = body.copy()
            if nodeid_from_binary(copy) == CALL_REQUEST:
                return int(struct_from_binary(ua.RequestHeader, copy).ReturnDiagnostics)
        return None


def answer_calls_concurrently() -> None:
    """Make asyncua's servers in this process run Call requests concurrently (idempotent).

    Raises:
        RuntimeError: This asyncua no longer has the processor this relies on. ``require_asyncua`` refuses
            versions outside the tested minor (pyproject's ``opcua`` extra bounds it too); this check is the
            last line for an install that bypassed both.
    """
    current = getattr(binary_server_asyncio, "UaProcessor", None)
    if current is _ConcurrentCalls:
        return
    if current is not UaProcessor or not hasattr(UaProcessor, "process_message"):
        raise RuntimeError("asyncua's server internals changed: calls would block their connection")
    binary_server_asyncio.UaProcessor = _ConcurrentCalls  # type: ignore[misc]
