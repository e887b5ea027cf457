"""Evidence served only from its folder, the NG gallery, and labelling a case from it."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge_ad.console.app import create_app, users_file
from edge_ad.console.users import add_user
from tests.unit.console.conftest import PASSWORDS, csrf_of, login, make_config

JPEG = b"\xff\xd8\xff\xe0 a frame \xff\xd9"
HEAT = b"\xff\xd8\xff\xe0 a heatmap \xff\xd9"
SECRET = b"\xff\xd8 not evidence: outside the folder \xff\xd9"


@pytest.fixture
def evidence(config):
    """The evidence folder with one older NG part (frame and heatmap) and a secret file beside the folder."""
    folder = config.service.state_dir / "evidence"
    folder.mkdir(parents=True)
    (folder / "20261125-134400_000000005.jpg").write_bytes(JPEG)
    (folder / "20261125-134400_000000005_heatmap.jpg").write_bytes(HEAT)
    (config.service.state_dir / "secret.jpg").write_bytes(SECRET)
    return folder


def test_a_viewer_reads_evidence_from_the_folder(client, logged_in, evidence):
    logged_in("vera")
    response = client.get("/evidence/20261125-134400_000000005_heatmap.jpg")
    assert response.status_code == 200 and response.content == HEAT
    assert response.headers["content-type"] == "image/jpeg"


def test_evidence_needs_a_login(client, evidence):
    assert client.get("/evidence/20261125-134400_000000005.jpg").status_code == 303


@pytest.mark.parametrize(
    "path",
    [
        "/evidence/..%2Fsecret.jpg",
        "/evidence/%2E%2E%2Fsecret.jpg",
        "/evidence/..%5Csecret.jpg",
        "/evidence/%2Fetc%2Fpasswd",
        "/evidence/.hidden.jpg",
        "/evidence/link.jpg",
        "/evidence/inner-link.jpg",
        "/evidence/missing.jpg",
        "/evidence/20261125-134400_000000005.jpg%00.png",
    ],
)
def test_evidence_refuses_traversal_symlinks_and_absolute_paths(client, logged_in, evidence, path):
    (evidence / "link.jpg").symlink_to(evidence.parent / "secret.jpg")
    (evidence / "inner-link.jpg").symlink_to(evidence / "20261125-134400_000000005.jpg")  # links are never followed
    (evidence / ".hidden.jpg").write_bytes(JPEG)
    logged_in("vera")
    response = client.get(path)
    assert response.status_code == 404, response.status_code
    assert SECRET not in response.content and JPEG not in response.content


@pytest.mark.parametrize("name", ["..", "../secret.jpg", "/etc/passwd", "sub/x.jpg", "..\\secret.jpg", "", "x.png"])
def test_open_evidence_refuses_names_that_leave_the_folder(evidence, name):
    from edge_ad.console.evidence import open_evidence

    fd = open_evidence(evidence, "20261125-134400_000000005.jpg")
    assert fd is not None  # the check can say yes
    os.close(fd)
    assert open_evidence(evidence, name) is None


def test_a_symlinked_folder_entry_pointing_out_is_refused_even_by_name(client, logged_in, evidence):
    outside = evidence.parent / "outside"
    outside.mkdir()
    (outside / "20261125-999999_000000001.jpg").write_bytes(SECRET)
    os.symlink(outside / "20261125-999999_000000001.jpg", evidence / "20261125-999999_000000001.jpg")
    logged_in("vera")
    assert client.get("/evidence/20261125-999999_000000001.jpg").status_code == 404
    assert "20261125-999999_000000001" not in client.get("/gallery").text  # nor listed


def test_the_gallery_shows_feed_verdicts_and_older_files(client, logged_in, evidence):
    feed = client.app.state.feed
    frame = evidence / "20261125-134410_000000009.jpg"
    frame.write_bytes(JPEG)
    (evidence / "20261125-134410_000000009_heatmap.jpg").write_bytes(HEAT)
    feed.add_verdict({"verdict": "NG", "seq": 9, "run": "r", "ts": 1795614250.0, "time": "2026-11-25T13:44:10Z",
                      "score": 40.5, "threshold": 26.47, "evidence": str(frame), "case": 1795614250000123,
                      "hint": {"label": "scratch", "case": 1, "similarity": 0.93}})  # fmt: skip
    logged_in("tom")
    page = client.get("/gallery").text
    newest, older = page.index("shot-1"), page.index("shot-2")
    assert newest < older
    assert "/evidence/20261125-134410_000000009_heatmap.jpg" in page[newest:older]
    assert "40.5 / threshold 26.47" in page and "scratch (0.93)" in page
    assert "/evidence/20261125-134400_000000005_heatmap.jpg" in page[older:]  # from the folder only
    assert "not enabled" in page  # the case store is off in this config: said, no label buttons
    assert 'action="/gallery/label"' not in page


@pytest.fixture
def cases_app(tmp_path, models):
    """The console with an embedded case store holding one case."""
    pytest.importorskip("qdrant_client")
    from edge_ad.cases.store import Case, cases_dir, open_store

    config = make_config(tmp_path, models)
    config = config.model_copy(update={"cases": config.cases.model_copy(update={"enabled": True})})
    for name, password in PASSWORDS.items():
        add_user(users_file(config), name, password, "viewer" if name == "vera" else "technician")
    ident = int(time.time() * 1000) * 1000 + 7
    store = open_store(config.cases, cases_dir(config))
    store.add(Case(ident, np.ones(8, dtype=np.float32), {"station": "press-3", "verdict": "NG"}), "space")
    store.close()
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as client:
        client.app.state.feed.add_verdict({"verdict": "NG", "seq": 3, "score": 30.0, "threshold": 26.0,
                                           "case": ident, "hint": {"label": "dent", "similarity": 0.9}})  # fmt: skip
        yield client, config, ident


def stored_label(config, ident):
    from edge_ad.cases.store import cases_dir, open_store

    store = open_store(config.cases, cases_dir(config))
    try:
        return store.get(ident).label
    finally:
        store.close()


def test_a_technician_labels_a_case_in_one_click(cases_app):
    client, config, ident = cases_app
    login(client, "tom")
    page = client.get("/gallery").text
    assert 'name="label" value="dent"' in page  # the hint as a one-click button
    response = client.post("/gallery/label", data={"csrf": csrf_of(page), "case": str(ident), "label": "dent"})
    assert response.status_code == 303
    assert f"case {ident}: labelled" in client.get("/gallery").text
    assert stored_label(config, ident) == "dent"


def test_a_viewer_cannot_label(cases_app):
    client, config, ident = cases_app
    login(client, "vera")
    page = client.get("/gallery").text
    assert 'action="/gallery/label"' not in page
    response = client.post("/gallery/label", data={"csrf": csrf_of(page), "case": str(ident), "label": "dent"})
    assert response.status_code == 403
    assert stored_label(config, ident) is None


def test_a_cross_site_label_post_is_refused(cases_app):
    client, config, ident = cases_app
    login(client, "tom")
    token = csrf_of(client.get("/gallery").text)
    form = {"csrf": token, "case": str(ident), "label": "dent"}
    assert client.post("/gallery/label", data=form, headers={"origin": "https://evil.example"}).status_code == 403
    assert client.post("/gallery/label", data={**form, "csrf": "forged"}).status_code == 403
    assert stored_label(config, ident) is None


def test_bad_labels_and_unknown_cases_are_said_not_raised(cases_app):
    client, config, ident = cases_app
    login(client, "tom")
    token = csrf_of(client.get("/gallery").text)
    for case, label, said in [(str(ident), "x" * 65, "at most 64"), (str(ident), "a\nb", "control"),
                              ("12", "dent", "no case with id 12"), ("abc", "dent", "not a case id")]:  # fmt: skip
        assert client.post("/gallery/label", data={"csrf": token, "case": case, "label": label}).status_code == 303
        assert said in client.get("/gallery").text
    assert stored_label(config, ident) is None


def test_labelling_with_the_case_store_off_says_so(client, logged_in):
    token = logged_in("tom")
    response = client.post("/gallery/label", data={"csrf": token, "case": "1", "label": "dent"})
    assert response.status_code == 303
    assert "NOT labelled: The case store is not enabled" in client.get("/gallery").text
