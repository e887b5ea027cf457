"""The technician console as a person uses it: a real Chromium against the real console, daemon and mosquitto.

One station for the module: the daemon replays a folder in a loop with the tiny bundle store (v1 and
v2, v2 active), the console serves it over HTTPS with its self-signed certificate, and a paho
recorder watches the daemon's verdicts. Every test logs in through the login form in a fresh browser.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")  # the console extra (as the console's unit tests)
pytest.importorskip("argon2")

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from edge_ad.bundle import activate
from edge_ad.bundle.store import active_version
from tests.support.broker import Recorder
from tests.support.browser import (
    PANEL,
    TABLET,
    Console,
    browser,
    console_server,
    overflow,
    page_errors,
    screenshot,
    set_viewport,
)
from tests.support.net import free_port
from tests.support.station import start_daemon, station_config
from tests.support.tiny_bundle import good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the fixture, imported for the tests below

STATION = "press-7-console"
USERS = {"tom": ("technician", "technician-pass-1"), "vera": ("viewer", "viewer-pass-1")}


@dataclass
class Station:
    console: Console
    models: Path  # the bundle store, models/tiny
    rec: Recorder
    daemon: subprocess.Popen


@pytest.fixture(scope="module")
def station(tiny_models, mosquitto, tmp_path_factory) -> Iterator[Station]:
    tmp = tmp_path_factory.mktemp("console-browser")
    models = tmp / "models"
    shutil.copytree(tiny_models, models, symlinks=True)
    make_tiny_bundle(models, "tiny")  # version 2, activated: a rollback goes back to 1
    assert active_version(models / "tiny") == "2"
    frames = write_frames(tmp / "frames", [good_image(700 + i) for i in range(3)])
    config = station_config(
        tmp, str(frames), models / "tiny", mosquitto.port, station=STATION,
        camera={"fps": 20, "loop": True}, service={"stats_interval_s": 0.5},
        console={"port": free_port(), "login_attempts_per_minute": 100},  # every login of the module is from 127.0.0.1
    )  # fmt: skip
    for name, (role, password) in USERS.items():
        added = subprocess.run(
            [sys.executable, "-m", "edge_ad.cli", "console-user", "add", "--config", str(config), name,
             "--role", role, "--password-stdin"],
            input=password + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    with Recorder(mosquitto, topic=f"edge_ad/{STATION}/#") as rec:
        daemon = start_daemon(config)
        try:
            online = rec.wait_for(lambda r: any(s.get("state") == "online" for s in r.on("status")), timeout=30)
            assert online and rec.wait_for(lambda r: "2" in _verdict_versions(r)), "the daemon did not start judging"
            with console_server(config) as console:
                yield Station(console, models / "tiny", rec, daemon)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=20)
            print(stderr, file=sys.stderr)  # shown by pytest when the module's setup or teardown fails
    assert daemon.returncode == 0, stderr


def _verdict_versions(rec: Recorder, since: int = 0) -> list[str]:
    """Model versions named by the daemon's verdicts, from the ``since``-th verdict on."""
    return [v["model"]["version"] for v in rec.on("verdict")[since:]]


def make_active(station: Station, version: str) -> None:
    """Activate ``version`` as ``edge-ad models activate`` would, and wait until the daemon judges with it."""
    if active_version(station.models) != version:
        activate(station.models, version)
    count = len(station.rec.on("verdict"))
    assert station.rec.wait_for(lambda r: version in _verdict_versions(r, count), timeout=15), "no swap"


def wait(driver, condition, timeout: float = 10.0, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def path_of(driver) -> str:
    return urllib.parse.urlsplit(driver.current_url).path


def submit_login(driver, console: Console, name: str, password: str) -> None:
    """Type into the login form and press the button, as a person would; wait for the next page."""
    driver.get(f"{console.url}/login")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]"))


def _new_page_loaded(driver) -> bool:
    try:
        return driver.execute_script("return !window.edgeAdOldPage && document.readyState === 'complete'")
    except WebDriverException:  # between two documents
        return False


def log_in(driver, console: Console, name: str) -> None:
    submit_login(driver, console, name, USERS[name][1])
    assert path_of(driver) == "/", f"{name} not logged in: {driver.find_element(By.TAG_NAME, 'main').text}"
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == f"{name} ({USERS[name][0]})"


def click_and_wait(driver, element) -> None:
    """Click a button that submits a form and wait until the next page has replaced this one."""
    driver.execute_script("window.edgeAdOldPage = true")
    element.click()
    wait(driver, _new_page_loaded, message="the click did not load a new page")


def visible_alerts(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[role=alert]") if e.is_displayed()]


def buttons(driver) -> list[str]:
    return [b.text for b in driver.find_elements(By.CSS_SELECTOR, "main button, main .button")]


def test_login_form_and_live_page(station, browser):
    console = station.console
    browser.get(f"{console.url}/")
    assert path_of(browser) == "/login", "the live page is shown without a login"

    submit_login(browser, console, "tom", "not-his-password")
    assert path_of(browser) == "/login"
    assert browser.find_element(By.CSS_SELECTOR, "[role=alert]").text == "wrong user name or password"
    browser.get(f"{console.url}/models")
    assert path_of(browser) == "/login", "a failed login opened a session"

    log_in(browser, console, "tom")
    assert browser.find_element(By.CSS_SELECTOR, ".bar .station").text == STATION
    assert browser.find_element(By.TAG_NAME, "h1").text == STATION
    retained = station.rec.on("status")[-1]["state"]
    assert retained == "online"
    shown = {e.text: e.get_attribute("class") for e in browser.find_elements(By.CSS_SELECTOR, "main .state")}
    assert "state-online" in shown.get(retained, ""), f"the live page does not show the state {retained}: {shown}"
    assert not visible_alerts(browser), f"the live page reports an error: {visible_alerts(browser)}"
    assert "not current" not in browser.find_element(By.TAG_NAME, "main").text


def test_viewer_has_no_controls_and_cannot_post(station, browser):
    console, before = station.console, active_version(station.models)
    log_in(browser, console, "vera")
    browser.get(f"{console.url}/models")
    listed = [
        td.text.split()[0] for td in browser.find_elements(By.CSS_SELECTOR, "table.versions tbody td:first-child")
    ]
    assert listed == ["v1", "v2"]
    assert buttons(browser) == [], "a viewer sees controls on the models page"
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action^='/models/']")

    # the viewer forges the technician's request from the console's own page, with the session's CSRF token
    csrf = browser.find_element(By.CSS_SELECTOR, "form.logout input[name=csrf]").get_attribute("value")
    other = "1" if before == "2" else "2"
    answer = browser.execute_async_script(
        """
        const [csrf, version, done] = arguments;
        fetch('/models/activate', {method: 'POST', body: new URLSearchParams({csrf, version, confirm: 'yes'})})
          .then(async r => done([r.status, await r.text()]), e => done([0, String(e)]));
        """,
        csrf,
        other,
    )
    assert answer[0] == 403 and "this needs the technician role" in answer[1], answer
    assert active_version(station.models) == before
    assert "activated" not in console.log_text()


def forge_cross_site_activation(driver, console: Console, version: str) -> str:
    """From a logged-in technician's models page, post an activation of ``version`` from a ``data:`` page.

    The forged form even carries the session's own CSRF token: only the origin check and the SameSite
    cookie stand in its way. Returns the text of the page the browser lands on.
    """
    driver.get(f"{console.url}/models")
    assert any(b.startswith("Activate") for b in buttons(driver)), "the technician has no Activate button"
    token = driver.find_element(By.CSS_SELECTOR, "form[action='/models/activate'] input[name=csrf]")
    evil = (
        f'<form method="post" action="{console.url}/models/activate">'
        f'<input name="csrf" value="{token.get_attribute("value")}"><input name="version" value="{version}">'
        '<input name="confirm" value="yes"><button id="go">win a prize</button></form>'
    )
    driver.get("data:text/html;charset=utf-8," + urllib.parse.quote(evil))
    click_and_wait(driver, driver.find_element(By.ID, "go"))
    assert driver.current_url.startswith(f"{console.url}/models/activate")
    return driver.find_element(By.TAG_NAME, "main").text


def test_cross_site_form_is_refused(station, browser):
    console, before = station.console, active_version(station.models)
    log_in(browser, console, "tom")
    landed = forge_cross_site_activation(browser, console, "1" if before == "2" else "2")
    assert "cross-site request refused (origin null)" in landed, landed
    assert active_version(station.models) == before
    assert " activated v" not in console.log_text()


def test_a_refused_cross_site_post_keeps_the_technician_logged_in(station, browser):
    console, before = station.console, active_version(station.models)
    log_in(browser, console, "tom")
    forge_cross_site_activation(browser, console, "1" if before == "2" else "2")
    browser.get(f"{console.url}/models")
    assert path_of(browser) == "/models", "the refused cross-site post ended the technician's session"


def test_technician_rolls_back_and_the_daemon_swaps(station, browser):
    console, rec = station.console, station.rec
    make_active(station, "2")
    log_in(browser, console, "tom")
    browser.get(f"{console.url}/models")
    assert browser.find_element(By.CSS_SELECTOR, "tr.active td").text == "v2 active"
    rollback = browser.find_element(By.CSS_SELECTOR, "form[action='/models/rollback'] button")
    assert rollback.text == "Roll back to v1…"
    click_and_wait(browser, rollback)
    assert browser.find_element(By.CSS_SELECTOR, ".card p").text == f"Roll {STATION} back from v2 to v1?"
    assert active_version(station.models) == "2", "the rollback happened before it was confirmed"
    count = len(rec.on("verdict"))
    click_and_wait(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Yes, do it']"))
    assert path_of(browser) == "/models"
    assert browser.find_element(By.CSS_SELECTOR, ".flash").text.startswith("rolled back v2 -> v1")
    assert active_version(station.models) == "1"
    assert rec.wait_for(lambda r: "1" in _verdict_versions(r, count), timeout=15), "the daemon kept v2"
    assert rec.wait_for(lambda r: _verdict_versions(r)[-3:] == ["1"] * 3, timeout=5)
    assert "tom activated v1 (was v2)" in console.log_text()


def test_models_page_with_the_oldest_version_active(station, browser):
    make_active(station, "1")
    log_in(browser, station.console, "vera")
    browser.get(f"{station.console.url}/models")
    assert not visible_alerts(browser), visible_alerts(browser)
    assert browser.find_element(By.CSS_SELECTOR, "tr.active td").text == "v1 active"


def test_every_page_fits_the_panel_and_a_tablet(station, browser, tmp_path):
    """Each page (login, every page of the menu, a confirmation, an error) at both sizes: no sideways overflow,
    no error in the browser's console; screenshots in tmp_path/screenshots."""
    console, problems = station.console, []
    make_active(station, "2")  # the models page of the screenshots: v2 active, v1 to roll back to

    def check(name: str, size: tuple[int, int]) -> None:
        wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        label = f"{name}@{size[0]}x{size[1]}"
        screenshot(browser, tmp_path, label)
        assert name == "error" or browser.find_element(By.TAG_NAME, "h1").is_displayed(), label
        if (wide := overflow(browser)) is not None:
            problems.append(f"{label}: wider than the screen: {wide}")
        errors = [e for e in page_errors(browser) if "/favicon.ico " not in e]  # the browser's own guess (no icon yet)
        if name == "error":  # the 404 of the page itself is logged as a failed load
            errors = [e for e in errors if "404" not in e]
        if errors:
            problems.append(f"{label}: browser console errors: {errors}")

    for size in (PANEL, TABLET):
        browser.delete_all_cookies()
        set_viewport(browser, *size)
        browser.get(f"{console.url}/login")
        check("login", size)
        log_in(browser, console, "tom")
        menu = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")]
        assert {f"{console.url}/", f"{console.url}/models"} <= set(menu), menu
        for href in menu:
            browser.get(href)
            check(urllib.parse.urlsplit(href).path.strip("/").replace("/", "-") or "live", size)
        browser.get(f"{console.url}/models")
        click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/models/activate'] button"))
        check("confirm", size)
        browser.get(f"{console.url}/no-such-page")
        check("error", size)
    shots = {p.name for p in (tmp_path / "screenshots").iterdir()}
    assert {
        f"{page}@{w}x{h}.png" for page in ("login", "live", "models", "confirm", "error") for w, h in (PANEL, TABLET)
    } <= shots
    assert not problems, "\n".join(problems)
