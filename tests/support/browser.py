"""A real headless Chromium (Debian's chromium + chromium-driver, driven by selenium) and the console as a subprocess.

``browser`` is a pytest fixture (import it into the test module); :func:`chromium` is the same as a context
manager. A missing browser, driver or selenium is a test failure, never a skip: ``scripts/setup.sh``
installs all three wherever the test extra is installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edge_ad.bench.browser import CHROMEDRIVER, CHROMIUM, PANEL, browser_missing, headless_chromium, set_viewport

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "PANEL",
    "TABLET",
    "Console",
    "browser",
    "chromium",
    "console_server",
    "overflow",
    "page_errors",
    "screenshot",
    "set_viewport",
]

TABLET = (820, 1180)  # a tablet in portrait


def _need_browser() -> None:
    missing = browser_missing()
    if missing:
        pytest.fail(f"browser tests: {missing}", pytrace=False)


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium WebDriver (viewport :data:`PANEL`), quit afterwards."""
    _need_browser()
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def browser() -> Iterator:
    """A fresh headless Chromium for one test (no cookies from another test)."""
    with chromium() as driver:
        yield driver


def page_errors(driver) -> list[str]:
    """The browser console's errors since the last call (script errors, CSP refusals, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, folder: Path, name: str) -> Path:
    """Save the viewport as ``folder/screenshots/<name>.png`` and return the path."""
    path = folder / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    assert png.startswith(b"\x89PNG") and len(png) > 1000, f"{name}: no usable screenshot"
    path.write_bytes(png)
    return path


def overflow(driver) -> dict | None:
    """None when nothing sticks out sideways; else the page's widths and the elements that reach past the viewport."""
    return driver.execute_script(
        """
        const doc = document.documentElement, vw = window.innerWidth;
        if (doc.scrollWidth <= vw) return null;
        const wide = [];
        for (const el of document.body.querySelectorAll('*')) {
          const r = el.getBoundingClientRect();
          if (r.right > vw + 0.5) wide.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')
                                            + ' right=' + Math.round(r.right));
        }
        return {scrollWidth: doc.scrollWidth, innerWidth: vw, elements: wide.slice(0, 10)};
        """
    )


@dataclass
class Console:
    """A running ``edge-ad console``: its base URL (no trailing slash), process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        """What the console wrote to stderr so far."""
        return self.log.read_text(errors="replace")


def _console_url(config: Path) -> str:
    section = (yaml.safe_load(config.read_text()) or {}).get("console") or {}
    host = section.get("host", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    scheme = "https" if section.get("tls", True) else "http"
    return f"{scheme}://{host}:{section.get('port', 8443)}"


@contextlib.contextmanager
def console_server(config: Path, timeout: float = 20.0) -> Iterator[Console]:
    """``edge-ad console --config`` as a subprocess, once its login page answers; stopped with SIGTERM afterwards.

    The URL comes from the config's ``console`` section (give it a free port). Its stderr goes to
    ``console.log`` beside the config. Asserts a clean exit (a graceful uvicorn shutdown, no traceback) when
    stopped.
    """
    url = _console_url(config)
    log = config.parent / "console.log"
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # the self-signed certificate the console makes on first start
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ad.cli", "console", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    console = Console(url, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"edge-ad console exited with code {proc.returncode}:\n{console.log_text()}")
            try:
                with urllib.request.urlopen(f"{url}/login", timeout=1, context=unverified) as response:
                    if response.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"edge-ad console did not answer on {url}/login in {timeout} s:\n{console.log_text()}")
            time.sleep(0.1)
        yield console
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"edge-ad console did not stop within 15 s of SIGTERM:\n{console.log_text()}")
    text = console.log_text()
    # uvicorn (>= 0.29) shuts down gracefully on SIGTERM, then raises the signal again to end the process with it:
    # a clean stop is code 0 or -SIGTERM after uvicorn's own last line (systemd counts SIGTERM as success too)
    clean = code == 0 or (code == -signal.SIGTERM and "Finished server process" in text)
    assert clean, f"edge-ad console exited with code {code}:\n{text}"
    assert "Traceback" not in text, text
