"""A real headless Chromium: Debian's ``chromium`` + ``chromium-driver``, driven by selenium.

One home for the browser the console's tests and the console-cost bench open. ``idle`` starts the
driver — and so the browser and every process it forks, which inherit it — under ``SCHED_IDLE``: a
browser that only gets the CPU time the daemon leaves free (as a kiosk browser started with
``CPUSchedulingPolicy=idle`` does, and as a browser on a tablet costs the station nothing).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edge_ad.errors import EdgeAdError

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "FLAGS",
    "PANEL",
    "browser_missing",
    "headless_chromium",
    "idle_priority",
    "set_viewport",
]

CHROMIUM = Path(os.environ.get("EDGE_AD_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EDGE_AD_CHROMEDRIVER", "/usr/bin/chromedriver"))
PANEL = (1280, 800)  # the station's panel PC
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # run as root here
    "--ignore-certificate-errors",  # the console's self-signed certificate
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",  # loads nothing from the internet
    f"--window-size={PANEL[0]},{PANEL[1]}",
)


def browser_missing() -> str | None:
    """Why a headless Chromium cannot be started here (what to install), or None."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"Debian's chromium and chromium-driver are needed ({', '.join(missing)} missing): " + (
            "apt-get install chromium chromium-driver, or run scripts/setup.sh"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is needed: pip install -e '.[test]'"
    return None


def idle_priority() -> None:
    """Put the calling thread under ``SCHED_IDLE`` (Linux schedules threads; what it starts inherits it)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def set_viewport(driver, width: int, height: int) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels (the window's own bars not counted).

    Desktop emulation (``mobile: false``) on purpose: a mobile viewport widens itself to fit content that
    is too wide, which would hide the very overflow the layout checks look for.
    """
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    got = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if got != [width, height]:
        raise EdgeAdError(f"browser: viewport {got}, wanted {width}x{height}")


@contextlib.contextmanager
def headless_chromium(idle: bool = False) -> Iterator:
    """A headless Chromium WebDriver (viewport :data:`PANEL`), quit afterwards.

    Raises:
        EdgeAdError: Chromium, its driver or selenium is missing (the message says what to install).
    """
    missing = browser_missing()
    if missing:
        raise EdgeAdError(f"browser: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console messages
    service = Service(str(CHROMEDRIVER), popen_kw={"preexec_fn": idle_priority} if idle else {})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(20)
        set_viewport(driver, *PANEL)
        yield driver
    finally:
        driver.quit()
