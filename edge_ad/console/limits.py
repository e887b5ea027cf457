"""A ceiling on request bodies: no POST (not even an anonymous login) makes the console spool gigabytes to disk.

Starlette reads a whole form, file parts included, before any route or login check runs; this pure ASGI
middleware refuses a declared ``Content-Length`` above the ceiling at once (413) and cuts a body without
one (chunked) once it passes the ceiling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse

__all__ = ["MAX_REQUEST_BYTES", "BodyLimit"]

MAX_REQUEST_BYTES = 21 * 1024 * 1024  # the cases page's 20 MB image plus the form around it

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a request on, counting its body; refuse it once it is over the ceiling."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            text = f"request body larger than {self.max_bytes // 2**20} MB: refused"
            await PlainTextResponse(text, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body larger than {self.max_bytes // 2**20} MB: refused")
            return message

        await self.app(scope, counted, send)
