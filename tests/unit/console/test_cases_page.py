"""The cases page: newest cases, a case's 5 most similar, search by an uploaded image; with a real embedded store."""

from __future__ import annotations

import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge_ad.console.app import create_app, users_file
from edge_ad.console.users import add_user
from tests.support.tiny_bundle import coloured_defect, good_image, make_tiny_bundle
from tests.unit.console.conftest import PASSWORDS, csrf_of, login, make_config


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def enabled(config):
    config = config.model_copy(update={"cases": config.cases.model_copy(update={"enabled": True})})
    for name, password in PASSWORDS.items():
        add_user(users_file(config), name, password, "viewer" if name == "vera" else "technician")
    return config


def remember(config, images: list[np.ndarray], snapshots: list[str | None]) -> list[int]:
    """Store the images as the daemon would: embedded with the station's model, snapshot JPEG paths in the payload."""
    from edge_ad.cases.search import load_model
    from edge_ad.cases.store import Case, case_id, cases_dir, embedding_space, open_store
    from edge_ad.types import Frame

    model = load_model(config)
    space = embedding_space(model.bundle.manifest)
    store = open_store(config.cases, cases_dir(config))
    now, ids = time.time(), []
    try:
        for seq, (image, snapshot) in enumerate(zip(images, snapshots, strict=True)):
            result = model.infer(Frame(image=image, ts=0.0, index=seq, origin=f"{seq}.png"))
            ident = case_id(now + seq, seq, "press-3")
            payload = {"station": "press-3", "time": f"2026-11-25T13:44:{seq:02d}Z", "verdict": "NG",
                       "score": result.score, "threshold": model.threshold, "snapshot": snapshot,
                       "label": "scratch" if seq == 1 else None}  # fmt: skip
            store.add(Case(ident, result.embedding, payload), space)
            ids.append(ident)
    finally:
        store.close()
    return ids


@pytest.fixture
def station(tmp_path, models):
    """The console with an embedded case store of 8 cases: 7 with an evidence snapshot, one claiming /etc/passwd."""
    pytest.importorskip("qdrant_client")
    config = enabled(make_config(tmp_path, models))
    folder = config.service.state_dir / "evidence"
    folder.mkdir(parents=True)
    snapshots: list[str | None] = []
    for seq in range(7):
        path = folder / f"20261125-1344{seq:02d}_{seq:09d}.jpg"
        path.write_bytes(cv2.imencode(".jpg", coloured_defect(seq))[1].tobytes())
        snapshots.append(str(path))
    snapshots.append("/etc/passwd")
    ids = remember(config, [coloured_defect(seq) for seq in range(8)], snapshots)
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as client:
        yield client, config, ids


def shown(html: str, section: str) -> list[int]:
    """The case ids of the cards in the section with id ``section``."""
    start = html.index(f'id="{section}"')
    return [int(i) for i in re.findall(r'<article class="card case" id="case-(\d+)"', html[start:])]


def search(client, name: str, data: bytes, token: str | None, content_type: str = "image/png"):
    form = {"csrf": token} if token is not None else {}
    return client.post("/cases/search", data=form, files={"image": (name, data, content_type)})


def test_the_page_lists_the_newest_cases_with_pictures_only_from_the_evidence_folder(station):
    client, _, ids = station
    login(client, "vera")  # a viewer may look and search
    response = client.get("/cases")
    page = response.text
    assert response.status_code == 200 and '<a href="/cases">Cases</a>' in page
    assert shown(page, "recent") == ids[::-1]  # newest first
    assert "8 of 8 stored" in page and "scratch" in page and "unlabelled" in page
    assert page.count('src="/evidence/20261125-1344') == 7
    assert "passwd" not in page  # a snapshot outside the evidence folder gets no picture
    card = page[page.index(f'id="case-{ids[-1]}"') :]
    assert "No picture" in card[: card.index("</article>")]
    assert client.get("/evidence/20261125-134400_000000000.jpg").status_code == 200


def test_a_case_shows_its_5_most_similar_cases_but_not_itself(station):
    client, _, ids = station
    login(client, "vera")
    page = client.get(f"/cases?case={ids[2]}").text
    assert shown(page, "query")[0] == ids[2]  # the case itself on top
    similar = shown(page, "similar")
    assert len(similar) == 5 and ids[2] not in similar and set(similar) <= set(ids)
    sims = [float(s) for s in re.findall(r'class="similarity">#\d+ (-?[0-9.]+)<', page)]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True)
    assert f'href="/cases?case={similar[0]}"' in page  # search on from each


def test_unknown_or_malformed_case_ids_are_one_line(station):
    client, _, _ = station
    login(client, "vera")
    unknown = client.get("/cases?case=42")
    assert unknown.status_code == 200 and "no case with id 42" in unknown.text
    bad = client.get("/cases?case=abc")
    assert bad.status_code == 400 and "&#39;abc&#39; is not a case id" in bad.text
    for ident in ("-5", str(2**64)):
        assert client.get(f"/cases?case={ident}").status_code == 400


def test_an_uploaded_image_is_scored_and_finds_its_case(station):
    client, _, ids = station
    login(client, "vera")
    token = csrf_of(client.get("/cases").text)
    response = search(client, "part.png", png(coloured_defect(3)), token)
    assert response.status_code == 200, response.text
    page = response.text
    assert "Score <strong>" in page and "NG</strong>" in page  # a defect: above the threshold
    similar = shown(page, "similar")
    assert len(similar) == 5 and similar[0] == ids[3]
    assert 'src="data:image/jpeg;base64,' in page  # the query's preview (CSP: img-src data:)
    again = search(client, "good.png", png(good_image(9)), token)  # the cached model scores again
    assert again.status_code == 200 and "OK</strong>" in again.text


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("garbage.png", b"this is not an image at all" * 10, "garbage.png is not a PNG, JPEG or BMP image"),
        ("cut.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cut.png is not a readable image"),
        ("empty.png", b"", "choose an image file"),
        (
            "bomb.png",
            b"\x89PNG\r\n\x1a\n"
            + struct.pack(">I", 13)
            + b"IHDR"
            + struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0),
            "bomb.png has 20000×20000 pixels",
        ),
    ],
)
def test_an_upload_that_is_no_usable_image_is_one_clear_message(station, name, data, said):
    client, _, _ = station
    login(client, "vera")
    response = search(client, name, data, csrf_of(client.get("/cases").text))
    assert response.status_code == 400
    assert said in response.text and "Traceback" not in response.text
    assert 'id="similar"' not in response.text


def test_a_too_large_upload_is_refused(station):
    client, _, _ = station
    login(client, "vera")
    from edge_ad.console.cases_page import MAX_UPLOAD

    token = csrf_of(client.get("/cases").text)
    response = search(client, "huge.png", png(coloured_defect(1)) + b"\x00" * MAX_UPLOAD, token)
    assert response.status_code == 400 and "huge.png is larger than 20 MB" in response.text


def test_a_search_without_the_csrf_token_or_from_another_site_is_refused(station):
    client, _, _ = station
    login(client, "vera")
    token = csrf_of(client.get("/cases").text)
    assert search(client, "part.png", png(coloured_defect(1)), None).status_code == 403
    assert search(client, "part.png", png(coloured_defect(1)), "forged").status_code == 403
    image = ("p.png", png(coloured_defect(1)), "image/png")
    cross = client.post("/cases/search", data={"csrf": token}, files={"image": image},
                        headers={"origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403


def test_the_page_needs_a_login(station):
    client, _, _ = station
    assert client.get("/cases").status_code == 303


def test_store_trouble_is_one_line_on_the_page(station, monkeypatch):
    from edge_ad.cases import search as search_module
    from edge_ad.cases.store import CaseStoreBusy

    def busy(*args, **kwargs):
        raise CaseStoreBusy("cases.path: /x is in use by another process (the running daemon)")

    client, _, ids = station
    login(client, "vera")
    token = csrf_of(client.get("/cases").text)
    monkeypatch.setattr(search_module, "open_store", busy)
    for response in (client.get("/cases"), client.get(f"/cases?case={ids[0]}"),
                     search(client, "part.png", png(coloured_defect(1)), token)):  # fmt: skip
        assert response.status_code == 200
        assert "in use by another process" in response.text and "Traceback" not in response.text


def test_a_bundle_without_embedding_says_so_on_upload(tmp_path):
    pytest.importorskip("qdrant_client")
    make_tiny_bundle(tmp_path / "models", "plain", embedding=False)
    config = enabled(make_config(tmp_path, tmp_path / "models" / "plain"))
    with TestClient(create_app(config), base_url="https://testserver", follow_redirects=False) as client:
        login(client, "tom")
        response = search(client, "part.png", png(coloured_defect(1)), csrf_of(client.get("/cases").text))
    assert response.status_code == 200
    assert "stfpm bundle gives no embedding" in response.text and 'id="similar"' not in response.text


def test_with_the_case_store_off_the_page_says_so(client):
    login(client, "vera")
    page = client.get("/cases").text
    assert "The case store is not enabled" in page and 'action="/cases/search"' not in page
    response = search(client, "part.png", png(coloured_defect(1)), csrf_of(page))
    assert response.status_code == 200 and "The case store is not enabled" in response.text


def test_the_gallery_links_an_ng_part_to_its_similar_cases(station):
    client, _, ids = station
    client.app.state.feed.add_verdict({"verdict": "NG", "seq": 3, "score": 30.0, "threshold": 26.0, "case": ids[3]})
    login(client, "vera")
    page = client.get("/gallery").text
    assert f'<a class="button" href="/cases?case={ids[3]}">Similar cases</a>' in page


def test_the_header_size_check_reads_jpeg_and_bmp():
    from edge_ad.console.cases_page import _dimensions

    image = np.zeros((30, 50, 3), np.uint8)
    assert _dimensions(cv2.imencode(".jpg", image)[1].tobytes()) == (50, 30)
    assert _dimensions(cv2.imencode(".bmp", image)[1].tobytes()) == (50, 30)
    assert _dimensions(png(image)) == (50, 30)
    assert _dimensions(b"\xff\xd8\xff") is None and _dimensions(zlib.compress(b"x")) is None
