"""Downloading a bundle package for ``cmd/install``: only from allowed file servers, exactly as offered.

Plain urllib, no proxies from the environment, no redirects, HTTPS verified (with ``fleet.ca_file`` when
given); the body must be exactly the offered size: a longer stream or another Content-Length stops it.
"""

from __future__ import annotations

import http.client
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge_ad.errors import ConfigError, EdgeAdError, first_line

__all__ = ["CHUNK", "DownloadError", "download", "tls_context", "url_allowed"]

CHUNK = 1 << 20


class DownloadError(EdgeAdError):
    """A package could not be downloaded as offered (HTTP error, unreachable, too long, too short, too slow)."""


def url_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether ``url`` starts with one of ``prefixes`` and has no ``.``/``..`` path segments (also %-encoded)."""
    path = urlsplit(url).path
    if any(part in (".", "..") for part in unquote(path).replace("\\", "/").split("/")):
        return False
    return any(url.startswith(prefix) for prefix in prefixes)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying TLS context (certificate and host name), with the plant CA when given.

    Raises:
        ConfigError: ``ca_file`` unreadable or not PEM certificates.
    """
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"fleet.ca_file: cannot use {ca_file} ({first_line(exc)}); give a PEM file of CA certificates"
        ) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could leave fleet.url_prefixes: refused."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise DownloadError(f"the file server redirected to {newurl[:200]}; offer the package's final URL")


def download(url: str, dest: Path, size: int, timeout_s: float, context: ssl.SSLContext | None = None) -> None:
    """Download exactly ``size`` bytes from ``url`` into the new file ``dest`` (fsynced).

    No proxies from the environment, no redirects; HTTPS is verified with ``context``.

    Raises:
        DownloadError: HTTP error, unreachable, TLS refused, more or fewer bytes than ``size``, slower than
            ``timeout_s`` in all. ``dest`` may hold a partial file: the caller removes its staging folder.
        OSError: Writing ``dest`` failed (disk full).
    """
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirect(), urllib.request.HTTPSHandler(context=context)
    )
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "edge-ad"})
    where = urlsplit(url).netloc
    try:
        with opener.open(request, timeout=timeout_s) as response, open(dest, "xb") as out:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != size:
                raise DownloadError(f"{url}: the server has {length} bytes, the offer says {size}; nothing installed")
            got = 0
            while chunk := response.read(min(CHUNK, size + 1 - got)):
                got += len(chunk)
                if got > size:
                    raise DownloadError(f"{url}: longer than the offered {size} bytes; download stopped")
                if time.monotonic() > deadline:
                    raise DownloadError(f"{url}: not downloaded within fleet.download_timeout_s {timeout_s:g} s")
                out.write(chunk)
            if got != size:
                raise DownloadError(f"{url}: got {got} of the offered {size} bytes (connection cut?)")
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        why = exc.reason if isinstance(exc.reason, str) else first_line(exc.reason)
        raise DownloadError(f"{url}: cannot download from {where} ({why})") from None
    except TimeoutError:
        raise DownloadError(f"{url}: {where} stalled for fleet.download_timeout_s {timeout_s:g} s") from None
    except (ssl.SSLError, ConnectionError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: connection to {where} failed ({first_line(exc)})") from None
