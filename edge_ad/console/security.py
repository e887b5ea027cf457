"""Request security of the console: CSRF, same-origin checks, the login rate limit and role checks.

Every POST, PUT, PATCH and DELETE must carry the session's CSRF token (a hidden ``csrf`` form field or
an ``X-CSRF-Token`` header), and is refused when its ``Origin`` (or, without one, its ``Referer``)
names another site. The session cookie is also ``SameSite=Strict``: three locks on one door.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request

from edge_ad.console.users import ROLES, User

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "UNSAFE_METHODS",
    "LoginLimiter",
    "NotLoggedIn",
    "Technician",
    "Viewer",
    "csrf_protect",
    "csrf_token",
    "current_user",
    "require",
]

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotLoggedIn(Exception):
    """No valid session: the app answers with a redirect to the login page."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}".lower()


async def csrf_protect(request: Request) -> None:
    """App-wide dependency: refuse a state-changing request from another site or without the CSRF token.

    Raises:
        HTTPException: 403 with a one-line reason.
    """
    if request.method not in UNSAFE_METHODS:
        return
    claimed = request.headers.get("origin")
    if claimed is None and (referer := request.headers.get("referer")):
        claimed = _origin(referer) or "null"
    if claimed is not None and claimed.lower() != _own_origin(request):
        raise HTTPException(403, f"cross-site request refused (origin {claimed[:100]})")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    expected = request.session.get(CSRF_FIELD)
    if not sent or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


class LoginLimiter:
    """At most ``per_minute`` login attempts per client address in any 60 seconds (a sliding window).

    Args:
        per_minute: Attempts allowed in the window.
        clock: Monotonic seconds (tests pass their own).
    """

    WINDOW_S = 60.0
    MAX_CLIENTS = 10_000  # addresses remembered at most; the oldest are forgotten first

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._attempts: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, client: str) -> bool:
        """Count an attempt of ``client``; False when it is one too many (then it is not counted)."""
        now = self.clock()
        attempts = self._attempts[client]
        while attempts and attempts[0] <= now - self.WINDOW_S:
            attempts.popleft()
        if len(attempts) >= self.per_minute:
            return False
        attempts.append(now)
        if len(self._attempts) > self.MAX_CLIENTS:
            for stale in [c for c, a in self._attempts.items() if not a or a[-1] <= now - self.WINDOW_S]:
                del self._attempts[stale]
        return True

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again."""
        attempts = self._attempts.get(client)
        if not attempts:
            return 0
        return max(1, int(attempts[0] + self.WINDOW_S - self.clock()) + 1)


def current_user(request: Request) -> User:
    """The logged-in user, as the users file says now (a removed user or a changed role takes effect at once).

    Raises:
        NotLoggedIn: No session, or its user no longer exists.
    """
    from edge_ad.console.users import lookup

    name = request.session.get("user")
    if not isinstance(name, str):
        raise NotLoggedIn
    user = lookup(request.app.state.users_file, name)
    if user is None:
        request.session.clear()
        raise NotLoggedIn
    return user


def require(role: str) -> Callable[[Request], User]:
    """A dependency giving the logged-in user when they have at least ``role``.

    Raises:
        ValueError: ``role`` is not one of :data:`~edge_ad.console.users.ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def dependency(request: Request) -> User:
        user = current_user(request)
        if not user.may(role):
            raise HTTPException(403, f"this needs the {role} role; {user.name} is a {user.role}")
        return user

    return dependency


Viewer = Annotated[User, Depends(require("viewer"))]  # a route parameter: any logged-in user
Technician = Annotated[User, Depends(require("technician"))]  # a route parameter: technicians only
