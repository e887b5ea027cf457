"""The console web application: `create_app(config)`, FastAPI with templates and static files from the package."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from edge_ad.bundle.activation import rollback_target
from edge_ad.config import EdgeAdConfig
from edge_ad.config.console import USERS_FILE
from edge_ad.console import cases_page, fleet_page, gallery, models, recalibration_page
from edge_ad.console.events import StreamCount, event_stream
from edge_ad.console.evidence import evidence_dir, open_evidence
from edge_ad.console.feed import Feed
from edge_ad.console.limits import BodyLimit
from edge_ad.console.security import (
    CSRF_FIELD,
    LoginLimiter,
    NotLoggedIn,
    Technician,
    Viewer,
    csrf_protect,
    csrf_token,
)
from edge_ad.console.users import User, verify
from edge_ad.errors import BundleError, EdgeAdError

__all__ = ["SESSION_COOKIE", "create_app", "session_secret", "users_file"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "edge_ad_console"
SECRET_FILE = "session.key"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def users_file(config: EdgeAdConfig) -> Path:
    """The console users file: ``console.users_file``, else ``<service.state_dir>/console-users.json``."""
    return config.console.users_file or config.service.state_dir / USERS_FILE


def session_secret(state_dir: Path) -> str:
    """The key that signs session cookies: ``<state_dir>/console/session.key`` (0600), made on first start."""
    path = state_dir / "console" / SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    return secret


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return Jinja2Templates(env=env)


def create_app(config: EdgeAdConfig) -> FastAPI:
    """The console for ``config``'s station (paths in ``config.console`` already resolved).

    Args:
        config: The station configuration; the console reads ``station``, ``mqtt``, ``model``,
            ``security``, ``service.state_dir`` and ``console``.
    """
    console = config.console
    feed = Feed(config)
    folder = evidence_dir(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feed.start()
        try:
            yield
        finally:
            feed.stop()
            for stop in app.state.on_stop:  # what pages started (e.g. the fleet page's subscription)
                stop()

    app = FastAPI(
        title=f"edge_ad console {config.station}",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf_protect)],
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.feed = feed
    app.state.on_stop = []  # called when the console stops
    app.state.streams = StreamCount()
    app.state.events_keepalive_s = 15.0  # a comment line on a quiet /events stream this often (tests shorten it)
    app.state.users_file = users_file(config)
    app.state.limiter = LoginLimiter(console.login_attempts_per_minute)
    templates = _templates()
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(config.service.state_dir),
        session_cookie=SESSION_COOKIE,
        max_age=int(console.session_hours * 3600),
        same_site="strict",
        https_only=console.tls,
    )
    app.add_middleware(BodyLimit)  # outermost of ours: before the session is read or a form is parsed
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def page(request: Request, name: str, user: User | None = None, status_code: int = 200, **context: Any):
        context = {
            "station": config.station,
            "user": user,
            # an error page never starts a session: a refused cross-site request arrives without the
            # (SameSite=Strict) cookie, and a new session's cookie would log the technician out
            "csrf": request.session.get(CSRF_FIELD, "") if status_code >= 400 else csrf_token(request),
            "flash": request.session.pop("flash", None),
            **context,
        }
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    @app.exception_handler(NotLoggedIn)
    async def to_login(request: Request, exc: NotLoggedIn) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def error_page(request: Request, exc: StarletteHTTPException) -> Response:
        response = page(request, "error.html.j2", status_code=exc.status_code, message=str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # no icon: not a 404 in every browser's console

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return page(request, "login.html.j2", error=None)

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""):
        client = request.client.host if request.client else "?"
        limiter: LoginLimiter = request.app.state.limiter
        if not limiter.allow(client):
            logger.warning("console: login rate limit reached by %s", client)
            raise HTTPException(
                429,
                "too many login attempts: wait a minute and try again",
                headers={"Retry-After": str(limiter.retry_after(client))},
            )
        user = verify(request.app.state.users_file, username, password)
        if user is None:
            logger.warning("console: failed login for %r from %s", username[:64], client)
            return page(request, "login.html.j2", status_code=401, error="wrong user name or password")
        request.session.clear()  # a fresh session (and CSRF token) for the logged-in user
        request.session["user"] = user.name
        csrf_token(request)
        logger.info("console: %s (%s) logged in from %s", user.name, user.role, client)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    def logout(request: Request):
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def live(request: Request, user: Viewer):
        from edge_ad.service.status import read_station, stats_are_current

        snap = feed.snapshot()
        found, error = {"status": snap["status"], "stats": snap["stats"]}, None
        if found["status"] is None:  # the feed has nothing yet (just started, or no broker): ask once, as before
            try:
                found = read_station(config, timeout_s=1.5)
            except EdgeAdError as exc:
                found, error = {"status": None, "stats": None}, str(exc)
        status, stats = found.get("status"), found.get("stats")
        current = bool(status and stats and stats_are_current(status, stats))
        return page(request, "live.html.j2", user, status=status, stats=stats, current=current, error=error)

    @app.get("/events")
    def events(request: Request, user: Viewer):
        state = request.app.state
        stream = event_stream(request, feed, folder, state.streams, keepalive_s=state.events_keepalive_s)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @app.get("/evidence/{name}")
    def evidence(name: str, user: Viewer):
        fd = open_evidence(folder, name)
        if fd is None:
            raise HTTPException(404, "no such evidence file")
        with os.fdopen(fd, "rb") as f:
            data = f.read(gallery.MAX_IMAGE_BYTES + 1)
        if len(data) > gallery.MAX_IMAGE_BYTES:
            raise HTTPException(404, "no such evidence file")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/gallery", response_class=HTMLResponse)
    def gallery_page(request: Request, user: Viewer):
        shots = gallery.shots(feed, folder)
        return page(request, "gallery.html.j2", user, shots=shots, cases=gallery.cases_state(config),
                    folder=str(folder), labels=gallery.quick_labels(shots))  # fmt: skip

    @app.post("/gallery/label", response_class=HTMLResponse)
    def label(request: Request, user: Technician, case: Annotated[str, Form()], label: Annotated[str, Form()] = ""):
        request.session["flash"] = gallery.label(config, case, label, user.name)
        return RedirectResponse("/gallery", status_code=303)

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, user: Viewer):
        try:
            rows, error, target = models.version_rows(config), None, None
            if any(r.active for r in rows):
                try:
                    target = rollback_target(models.model_dir(config))[1]
                except BundleError:
                    target = None  # the oldest version is active: nothing to roll back to, the list stays
        except EdgeAdError as exc:
            rows, error, target = [], str(exc), None
        except Exception:  # a model store the page cannot read must not hide the page
            logger.exception("console: models page")
            rows, error, target = [], "the model store could not be read (see the console's log)", None
        return page(request, "models.html.j2", user, rows=rows, error=error, rollback_to=target)

    @app.post("/models/activate", response_class=HTMLResponse)
    def activate(
        request: Request, user: Technician, version: Annotated[str, Form()], confirm: Annotated[str, Form()] = ""
    ):
        if confirm != "yes":
            return page(request, "confirm.html.j2", user, action="/models/activate", field="version", value=version,
                        question=f"Make v{version} the active model of {config.station}?")  # fmt: skip
        try:
            request.session["flash"] = models.activate_version(config, version, user.name)
        except EdgeAdError as exc:
            request.session["flash"] = f"NOT activated: {exc}"
        return RedirectResponse("/models", status_code=303)

    @app.post("/models/rollback", response_class=HTMLResponse)
    def rollback(request: Request, user: Technician, target: Annotated[str, Form()] = "",
                 confirm: Annotated[str, Form()] = ""):  # fmt: skip
        try:
            active, to = rollback_target(models.model_dir(config))
        except EdgeAdError as exc:
            request.session["flash"] = f"NOT rolled back: {exc}"
            return RedirectResponse("/models", status_code=303)
        if confirm != "yes" or not target:
            return page(request, "confirm.html.j2", user, action="/models/rollback", field="target", value=to,
                        question=f"Roll {config.station} back from v{active} to v{to}?")  # fmt: skip
        try:
            request.session["flash"] = models.rollback(config, target, user.name)
        except EdgeAdError as exc:
            request.session["flash"] = f"NOT rolled back: {exc}"
        return RedirectResponse("/models", status_code=303)

    cases_page.add_routes(app, config, page)
    recalibration_page.add_routes(app, config, page)
    fleet_page.add_routes(app, config, page)
    return app
