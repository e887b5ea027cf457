"""The cases page: similar past cases of an NG (by its case) or of an uploaded image.

``GET /cases`` lists the newest stored cases; ``GET /cases?case=ID`` shows that case and its most
similar other cases; ``POST /cases/search`` (an image upload; it changes nothing, but like every
POST it carries the CSRF token) scores the image with the station's model and shows its most
similar cases. Everything goes through :mod:`edge_ad.cases.search`, as ``edge-ad cases similar``
does. Pictures are the cases' evidence snapshots, served only from the evidence folder.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from edge_ad.cases.store import Match
from edge_ad.config import EdgeAdConfig
from edge_ad.console.evidence import evidence_dir, url_of
from edge_ad.console.gallery import cases_state
from edge_ad.console.security import Viewer
from edge_ad.errors import EdgeAdError

__all__ = ["MAX_PIXELS", "MAX_UPLOAD", "CaseCard", "add_routes", "decode_upload"]

logger = logging.getLogger(__name__)

TEMPLATE = "cases.html.j2"
MAX_UPLOAD = 20 * 1024 * 1024  # bytes of an uploaded image
MAX_PIXELS = 40_000_000  # a larger image is refused before it is decoded (a small PNG can decode to gigabytes)
SHOWN = 48  # newest cases listed
SIMILAR = 5  # similar cases shown
PREVIEW = 320  # longest side of the uploaded image's preview (a data: URL)


@dataclass(frozen=True)
class CaseCard:
    """One stored case as the page shows it."""

    id: int
    similarity: float | None
    time: str
    station: str
    verdict: str
    score: float | None
    threshold: float | None
    label: str | None
    image_url: str | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _card(folder: Path, match: Match, similarity: bool = False) -> CaseCard:
    p = match.payload
    label = p.get("label")
    return CaseCard(
        id=match.id,
        similarity=match.similarity if similarity else None,
        time=str(p.get("time") or ""),
        station=str(p.get("station") or ""),
        verdict=str(p.get("verdict") or ""),
        score=_number(p.get("score")),
        threshold=_number(p.get("threshold")),
        label=label if isinstance(label, str) and label else None,
        image_url=url_of(folder, p.get("snapshot")),  # only a file inside the evidence folder
    )


def _dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG or BMP header; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                i += 2
                continue
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def decode_upload(data: bytes, name: str) -> np.ndarray | str:
    """The uploaded image as OpenCV reads it (BGR), or the one-line reason it is refused."""
    import cv2  # only when an image is uploaded: the console stays light

    shown = (name or "the file")[:80]
    if not data:
        return "choose an image file to search with"
    if len(data) > MAX_UPLOAD:
        return f"{shown} is larger than {MAX_UPLOAD // 2**20} MB; upload a smaller image"
    size = _dimensions(data)
    if size is None:
        return f"{shown} is not a PNG, JPEG or BMP image"
    if size[0] * size[1] > MAX_PIXELS:
        return f"{shown} has {size[0]}×{size[1]} pixels; at most {MAX_PIXELS // 1_000_000} million are searched"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        return f"{shown} is not a readable image (damaged or truncated)"
    return image


def _preview(image: np.ndarray) -> str:
    """``image`` as a JPEG of ``PREVIEW`` pixels (longest side) in a data: URL (the page's CSP admits data: images)."""
    import cv2  # only when an image is uploaded: the console stays light

    h, w = image.shape[:2]
    scale = PREVIEW / max(h, w)
    how = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST  # a tiny image stays sharp
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=how)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else ""


def _attempt(what: str, call: Callable[[], Any]) -> tuple[Any, str | None]:
    """``call()`` and no error, or None and the one line the page shows."""
    try:
        return call(), None
    except EdgeAdError as exc:
        return None, str(exc)
    except Exception:  # a store or model the page cannot read must not become a 500
        logger.exception("console: cases page (%s)", what)
        return None, f"the {what} failed (see the console's log)"


def add_routes(app: FastAPI, config: EdgeAdConfig, page: Callable) -> None:
    """Register this page's routes on the console ``app``; ``page(request, template, user, **context)`` renders."""
    from edge_ad.cases.search import ModelCache, recent_cases, similar_to_case, similar_to_image

    folder = evidence_dir(config)
    models = ModelCache()  # the station's model, loaded on the first upload, again after a model swap

    def render(request: Request, user: Any, status_code: int = 200, **context: Any) -> HTMLResponse:
        values: dict[str, Any] = {"cases": cases_state(config), "error": None, "total": None, "recent": None,
                                  "query": None, "upload": None, "matches": None, "k": SIMILAR, **context}  # fmt: skip
        return page(request, TEMPLATE, user, status_code=status_code, **values)

    @app.get("/cases", response_class=HTMLResponse)
    def cases(request: Request, user: Viewer, case: str = ""):
        if not cases_state(config)["enabled"]:
            return render(request, user)
        if not case.strip():
            found, error = _attempt("case store read", lambda: recent_cases(config, SHOWN))
            if found is None:
                return render(request, user, error=error)
            total, newest = found
            return render(request, user, total=total, recent=[_card(folder, m) for m in newest])
        try:
            ident = int(case.strip())
            if not 0 <= ident < 2**64:  # Qdrant's point ids
                raise ValueError
        except ValueError:
            return render(request, user, status_code=400, error=f"{case[:40]!r} is not a case id")
        found, error = _attempt("similar-case search", lambda: similar_to_case(config, ident, SIMILAR))
        if found is None:
            return render(request, user, error=error)
        return render(
            request, user, query=_card(folder, found.case), matches=[_card(folder, m, True) for m in found.matches]
        )

    @app.post("/cases/search", response_class=HTMLResponse)
    async def search(request: Request, user: Viewer):
        if not cases_state(config)["enabled"]:
            return render(request, user)
        item = (await request.form()).get("image")  # parsed (and cached) by the CSRF check already
        if not isinstance(item, UploadFile):
            return render(request, user, status_code=400, error="choose an image file to search with")
        data = await item.read(MAX_UPLOAD + 1)
        image = await run_in_threadpool(decode_upload, data, item.filename or "")
        if isinstance(image, str):
            return render(request, user, status_code=400, error=image)
        found, error = await run_in_threadpool(
            _attempt, "similar-case search", lambda: similar_to_image(config, image, SIMILAR, models)
        )
        upload = {"name": (item.filename or "")[:80], "preview": await run_in_threadpool(_preview, image)}
        if found is None:
            return render(request, user, upload=upload, error=error)
        upload.update(score=found.score, threshold=found.threshold)
        return render(request, user, upload=upload, matches=[_card(folder, m, True) for m in found.matches])
