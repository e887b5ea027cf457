from __future__ import annotations

import pytest

from edge_ad.bundle.store import active_version


def test_viewer_sees_models_without_buttons(client, logged_in, models):
    logged_in("vera")
    page = client.get("/models")
    assert page.status_code == 200
    assert "v1" in page.text and "v2 <strong>active</strong>" in page.text
    assert "/models/activate" not in page.text and "/models/rollback" not in page.text


def test_viewer_cannot_activate_a_model(client, logged_in, models):
    token = logged_in("vera")
    response = client.post("/models/activate", data={"csrf": token, "version": "1", "confirm": "yes"})
    assert response.status_code == 403
    assert "needs the technician role" in response.text
    assert active_version(models) == "2"
    response = client.post("/models/rollback", data={"csrf": token, "target": "1", "confirm": "yes"})
    assert response.status_code == 403
    assert active_version(models) == "2"


def test_technician_activates_after_confirming(client, logged_in, models):
    token = logged_in("tom")
    assert "/models/activate" in client.get("/models").text
    confirm = client.post("/models/activate", data={"csrf": token, "version": "1"})
    assert confirm.status_code == 200
    assert "Make v1 the active model of press-3?" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text
    assert active_version(models) == "2"  # asking changed nothing
    done = client.post("/models/activate", data={"csrf": token, "version": "1", "confirm": "yes"})
    assert done.status_code == 303
    assert active_version(models) == "1"
    assert "active -&gt; v1" in client.get("/models").text  # the message, once


def test_technician_rolls_back_after_confirming(client, logged_in, models):
    token = logged_in("tom")
    confirm = client.post("/models/rollback", data={"csrf": token})
    assert confirm.status_code == 200 and "from v2 to v1" in confirm.text
    assert active_version(models) == "2"
    done = client.post("/models/rollback", data={"csrf": token, "target": "1", "confirm": "yes"})
    assert done.status_code == 303
    assert active_version(models) == "1"
    again = client.post("/models/rollback", data={"csrf": token, "target": "1", "confirm": "yes"})
    assert again.status_code == 303 and active_version(models) == "1"
    assert "NOT rolled back" in client.get("/models").text  # v1 has nothing older


@pytest.mark.parametrize("version", ["../tiny/1", "7", "1/../2", ""])
def test_unknown_versions_change_nothing(client, logged_in, models, version):
    token = logged_in("tom")
    client.post("/models/activate", data={"csrf": token, "version": version, "confirm": "yes"})
    assert active_version(models) == "2"


def test_a_changed_file_is_not_activated(client, logged_in, models):
    token = logged_in("tom")
    with open(models / "1" / "memory_bank.npy", "ab") as f:
        f.write(b"tampered")
    client.post("/models/activate", data={"csrf": token, "version": "1", "confirm": "yes"})
    assert active_version(models) == "2"
    assert "NOT activated" in client.get("/models").text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "http://testserver"},  # same host, other scheme: another origin
    ],
)
def test_cross_site_post_is_refused(client, logged_in, models, headers):
    token = logged_in("tom")  # even with a valid session and token
    response = client.post("/models/activate", data={"csrf": token, "version": "1", "confirm": "yes"}, headers=headers)
    assert response.status_code == 403
    assert "cross-site request refused" in response.text
    assert active_version(models) == "2"


@pytest.mark.parametrize("token", [None, "", "wrong-token-of-another-session-0123456789"])
def test_post_without_the_csrf_token_is_refused(client, logged_in, models, token):
    logged_in("tom")
    data = {"version": "1", "confirm": "yes"} | ({"csrf": token} if token is not None else {})
    response = client.post("/models/activate", data=data)
    assert response.status_code == 403
    assert "CSRF token" in response.text
    assert active_version(models) == "2"


def test_same_origin_and_header_token_are_accepted(client, logged_in, models):
    token = logged_in("tom")
    response = client.post(
        "/models/activate",
        data={"version": "1", "confirm": "yes"},
        headers={"Origin": "https://testserver", "X-CSRF-Token": token},
    )
    assert response.status_code == 303
    assert active_version(models) == "1"


def test_cross_site_login_is_refused(client):
    from tests.unit.console.conftest import PASSWORDS, csrf_of

    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": "tom", "password": PASSWORDS["tom"], "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert client.get("/models").status_code == 303
