"""Trigger calls in the server's loop: the reply the daemon settles, and calls that never hold up a connection.

asyncua's server handles one connection's requests one after another. A ``Trigger`` call waits for
its frame (up to ``service.trigger_timeout_s`` plus ``opcua.answer_margin_s``), and meanwhile that
client's keep-alive reads and publish requests would wait too: asyncua's own client gives up on a
server that does not answer its 1 s probe, and a PLC may likewise drop the session. So Call requests
run as tasks of their own (at most :data:`MAX_CALLS` per connection; beyond that they queue as
before) and every other request is answered meanwhile; OPC UA lets responses come in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asyncua import ua
from asyncua.server import binary_server_asyncio
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import nodeid_from_binary

from edge_ad.service.modes import TriggerRejected
from edge_ad.types import Verdict

__all__ = ["MAX_CALLS", "PendingCall", "answer_calls_concurrently"]

logger = logging.getLogger(__name__)

MAX_CALLS = 64  # the trigger queue's size: more could not be answered anyway
CALL_REQUEST = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)


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
        if len(self._calls) < MAX_CALLS and self._is_call(body):
            task = asyncio.create_task(super().process_message(seqhdr, body))
            self._calls.add(task)
            task.add_done_callback(self._done)
            return True
        return await super().process_message(seqhdr, body)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled() and task.exception() is not None:  # asyncua answers its own errors: a bug
            logger.error("opcua: a call request failed", exc_info=task.exception())

    @staticmethod
    def _is_call(body: Any) -> bool:
        with contextlib.suppress(Exception):  # an unreadable type id: asyncua answers it as before
            return nodeid_from_binary(body.copy()) == CALL_REQUEST
        return False


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
