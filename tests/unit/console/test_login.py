from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from edge_ad.console.app import SESSION_COOKIE, create_app, users_file
from edge_ad.console.security import LoginLimiter
from edge_ad.console.users import add_user, remove_user
from tests.unit.console.conftest import PASSWORDS, login, make_config


def test_login_then_the_live_page(client):
    assert client.get("/").headers["location"] == "/login"  # not logged in
    response = login(client, "vera")
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "press-3" in page.text and "vera (viewer)" in page.text
    assert "not reachable" in page.text  # no broker in this test: said on the page, not a crash


def test_wrong_password_is_refused(client):
    response = login(client, "vera", "not-her-password")
    assert response.status_code == 401
    assert "wrong user name or password" in response.text
    assert client.get("/").status_code == 303  # still not logged in
    assert login(client, "nobody", "whatever-1").status_code == 401


def test_sixth_attempt_in_a_minute_gets_429(client):
    for _ in range(5):
        assert login(client, "tom", "guess-guess").status_code == 401
    response = login(client, "tom")  # the right password, but one attempt too many
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert client.get("/").status_code == 303


def test_the_window_slides():
    now = [1000.0]
    limiter = LoginLimiter(2, clock=lambda: now[0])
    assert limiter.allow("a") and limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")  # per address
    now[0] += 59.0
    assert not limiter.allow("a")
    now[0] += 1.5
    assert limiter.allow("a")


def _session_cookie(response) -> str:
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE)]
    assert cookies, "no session cookie set"
    return cookies[-1].lower()


def test_cookie_flags_under_tls(client):
    cookie = _session_cookie(login(client, "vera"))
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" in cookie


def test_no_secure_flag_on_plain_http_loopback(tmp_path, models):
    config = make_config(tmp_path, models, tls=False)
    add_user(users_file(config), "vera", PASSWORDS["vera"], "viewer")
    with TestClient(create_app(config), base_url="http://testserver", follow_redirects=False) as client:
        cookie = _session_cookie(login(client, "vera"))
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie


def test_a_removed_user_is_logged_out(client, config):
    assert login(client, "vera").status_code == 303
    assert client.get("/models").status_code == 200
    remove_user(users_file(config), "vera")
    assert client.get("/models").status_code == 303


def test_logout_needs_the_csrf_token_and_ends_the_session(client, logged_in):
    token = logged_in("vera")
    assert client.post("/logout").status_code == 403
    assert client.get("/models").status_code == 200
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/models").status_code == 303


@pytest.mark.parametrize("path", ["/", "/models", "/static/console.css"])
def test_pages_carry_security_headers(client, logged_in, path):
    logged_in("vera")
    response = client.get(path)
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_the_page_works_on_a_panel_and_a_tablet(client):
    page = client.get("/login").text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "/static/console.css" in page
    assert "://" not in page  # nothing from another site: no CDN, no font service
    css = client.get("/static/console.css")
    assert css.status_code == 200 and "@media (max-width: 700px)" in css.text


def test_a_huge_body_is_refused_before_it_is_read(client):
    """Starlette spools a whole form to disk before any route runs: an anonymous POST must not fill the disk."""
    from edge_ad.console.limits import MAX_REQUEST_BYTES

    form = {"content-type": "application/x-www-form-urlencoded"}
    declared = client.post("/login", content=b"x", headers={**form, "content-length": str(MAX_REQUEST_BYTES + 1)})
    assert declared.status_code == 413 and "larger than 21 MB" in declared.text

    def chunks():
        for _ in range(MAX_REQUEST_BYTES // 2**20 + 2):
            yield b"x" * 2**20

    chunked = client.post("/login", content=chunks(), headers=form)
    assert chunked.status_code == 413, chunked.text
