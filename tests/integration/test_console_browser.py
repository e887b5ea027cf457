"""The technician console as a person uses it: a real Chromium against the real console, daemon and mosquitto.

One station for the module: the daemon replays a folder in a loop with the tiny bundle store (v1 and
v2, v2 active) — good parts and, about once a second, a defect (an NG with its evidence and a case in
the embedded case store) —, the console serves it over HTTPS with its self-signed certificate, and a paho
recorder watches the daemon's verdicts (noting when each arrived). Every test logs in through the login
form in a fresh browser.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")  # the console extra (as the console's unit tests)
pytest.importorskip("argon2")

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
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
from tests.support.tiny_bundle import defect_image, good_image, make_tiny_bundle, write_frames

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the fixture, imported for the tests below

STATION = "press-7-console"
USERS = {"tom": ("technician", "technician-pass-1"), "vera": ("viewer", "viewer-pass-1")}
FPS = 20
GOOD_PER_DEFECT = 18  # one NG a little less than once a second


class TimedRecorder(Recorder):
    """A :class:`Recorder` that also notes when each verdict arrived (``time.monotonic()``, by run and seq)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrived: dict[tuple, float] = {}

    def _record(self, msg):
        item = super()._record(msg)
        topic, payload, _ = item
        if topic.endswith("/verdict"):
            self.arrived[(payload.get("run"), payload.get("seq"))] = time.monotonic()
        return item

    def arrival(self, verdict: dict) -> float:
        return self.arrived[(verdict.get("run"), verdict.get("seq"))]


@dataclass
class Station:
    console: Console
    models: Path  # the bundle store, models/tiny
    rec: TimedRecorder
    daemon: subprocess.Popen
    config: Path


@pytest.fixture(scope="module")
def station(tiny_models, mosquitto, tmp_path_factory) -> Iterator[Station]:
    tmp = tmp_path_factory.mktemp("console-browser")
    models = tmp / "models"
    shutil.copytree(tiny_models, models, symlinks=True)
    make_tiny_bundle(models, "tiny")  # version 2, activated: a rollback goes back to 1
    assert active_version(models / "tiny") == "2"
    good = [good_image(700 + i % 3) for i in range(GOOD_PER_DEFECT)]
    frames = write_frames(tmp / "frames", [*good, defect_image(720)])
    config = station_config(
        tmp, str(frames), models / "tiny", mosquitto.port, station=STATION,
        camera={"fps": FPS, "loop": True}, service={"stats_interval_s": 0.5}, cases={"enabled": True},
        mqtt={"username": STATION}, commands={"secret_file": str(command_key(tmp))},  # the wizard's commands
        recalibration={"mqtt_command": True, "min_frames": 20, "target_false_reject": 0.1},  # 40 frames
        console={"port": free_port(), "login_attempts_per_minute": 100},  # every login of the module is from 127.0.0.1
    )  # fmt: skip
    for name, (role, password) in USERS.items():
        added = subprocess.run(
            [sys.executable, "-m", "edge_ad.cli", "console-user", "add", "--config", str(config), name,
             "--role", role, "--password-stdin"],
            input=password + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    with TimedRecorder(mosquitto, topic=f"edge_ad/{STATION}/#") as rec:
        daemon = start_daemon(config)
        try:
            online = rec.wait_for(lambda r: any(s.get("state") == "online" for s in r.on("status")), timeout=30)
            assert online and rec.wait_for(lambda r: "2" in _verdict_versions(r)), "the daemon did not start judging"
            with console_server(config) as console:
                yield Station(console, models / "tiny", rec, daemon, config)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=20)
            print(stderr, file=sys.stderr)  # shown by pytest when the module's setup or teardown fails
    assert daemon.returncode == 0, stderr


def command_key(folder: Path) -> Path:
    """The station's command key: the console signs the wizard's cmd/recalibrate with it, the daemon checks it."""
    path = folder / "command.key"
    path.write_text("console-browser-test-command-key-0123456789\n")
    return path


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


LIVE_S = 2.0  # the issue: a new NG is in the gallery within 2 s of its verdict


def card_keys(driver) -> list[str]:
    return [c.get_attribute("data-key") for c in driver.find_elements(By.CSS_SELECTOR, "#gallery article.shot")]


def new_ng_card(station: Station, driver) -> tuple[dict, object, float]:
    """On an open gallery: the next NG verdict, its card and the seconds from the verdict's arrival (at the
    recorder) until the card was in the page; fails when that takes more than :data:`LIVE_S`."""
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    rec, count = station.rec, len(station.rec.on("verdict"))
    before = card_keys(driver)  # what the server rendered (and live refresh brought in so far)

    def new_ng(r: TimedRecorder) -> dict | None:
        return next((v for v in r.on("verdict")[count:] if v["verdict"] == "NG" and v.get("evidence")), None)

    assert rec.wait_for(new_ng, timeout=15), "the daemon sent no NG verdict"
    verdict = new_ng(rec)
    arrived = rec.arrival(verdict)
    name = Path(verdict["evidence"]).name
    assert name not in before, "the NG was on the page before its verdict arrived"
    selector = f'#gallery article.shot[data-key="{name}"]'
    left = LIVE_S - (time.monotonic() - arrived)
    assert left > 0, "the test noticed the verdict too late"
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector), timeout=left,
         message=f"no card for {name} within {LIVE_S} s of its verdict")  # fmt: skip
    elapsed = time.monotonic() - arrived
    card = driver.find_element(By.CSS_SELECTOR, selector)
    keys = card_keys(driver)
    assert not before or keys.index(name) < keys.index(before[0]), f"the new card is not above the older ones: {keys}"
    return verdict, card, elapsed


def facts(card) -> dict[str, str]:
    terms = card.find_elements(By.CSS_SELECTOR, "dl.facts dt")
    return {dt.text: dd.text for dt, dd in zip(terms, card.find_elements(By.CSS_SELECTOR, "dl.facts dd"), strict=True)}


def test_a_new_ng_appears_in_the_gallery_within_2_s(station, browser, tmp_path):
    log_in(browser, station.console, "tom")
    browser.get(f"{station.console.url}/gallery")
    verdict, card, elapsed = new_ng_card(station, browser)
    print(f"NG seq {verdict['seq']}: card in the gallery {elapsed:.3f} s after its verdict arrived")
    shown = facts(card)
    assert shown["Case"] == str(verdict["case"])
    assert shown["Seq"] == str(verdict["seq"])
    assert shown["Time"] == verdict["time"]
    assert shown["Score"] == f"{verdict['score']:.5g} / threshold {verdict['threshold']:.5g}"
    image = card.find_element(By.CSS_SELECTOR, "img.shot-image")
    heatmap = Path(verdict["evidence"]).name.replace(".jpg", "_heatmap.jpg")
    assert image.get_attribute("src").endswith(f"/evidence/{heatmap}")
    wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image),
         message="the new card's heatmap did not load")  # fmt: skip
    # a technician can label it from the new card, with the page's CSRF token
    token = browser.find_element(By.CSS_SELECTOR, "form.logout input[name=csrf]").get_attribute("value")
    forms = card.find_elements(By.CSS_SELECTOR, "form[action='/gallery/label']")
    assert forms and all(f.find_element(By.NAME, "csrf").get_attribute("value") == token for f in forms)
    assert all(f.find_element(By.NAME, "case").get_attribute("value") == str(verdict["case"]) for f in forms)
    screenshot(browser, tmp_path, "gallery-new-ng")
    errors = [e for e in page_errors(browser) if "/favicon.ico " not in e]
    assert not errors, errors

    # the keys reach the new cards too: j selects the newest, h shows its frame
    ActionChains(browser).send_keys("j").perform()
    newest = browser.find_element(By.CSS_SELECTOR, "#gallery article.shot")
    assert "selected" in newest.get_attribute("class")
    ActionChains(browser).send_keys("h").perform()
    shown = newest.find_element(By.CSS_SELECTOR, "img.shot-image").get_attribute("src")
    assert shown == station.console.url + newest.get_attribute("data-image"), "h did not show the new card's frame"


def cases_list(config: Path) -> list[dict]:
    listed = subprocess.run(
        [sys.executable, "-m", "edge_ad.cli", "cases", "list", "-n", "500", "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_technician_labels_a_new_ng_and_finds_it_in_cases_list(station, browser, tmp_path):
    log_in(browser, station.console, "tom")
    browser.get(f"{station.console.url}/gallery")
    verdict, card, _ = new_ng_card(station, browser)
    case = verdict["case"]
    label = f"bright-square-{verdict['seq']}"

    # as a person: click the part, press l, type the label, press Enter
    card.find_element(By.CSS_SELECTOR, "dl.facts").click()
    wait(browser, lambda d: "selected" in card.get_attribute("class"), message="clicking the card did not select it")
    ActionChains(browser).send_keys("l").perform()
    field = browser.switch_to.active_element
    assert field.get_attribute("aria-label") == f"label for case {case}", "l did not open the new card's label field"
    field.send_keys(label)
    browser.execute_script("window.edgeAdOldPage = true")
    field.send_keys(Keys.ENTER)
    wait(browser, _new_page_loaded, message="the label was not sent")
    assert path_of(browser) == "/gallery"
    flash = browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert flash.startswith(f"case {case}: label '{label}' queued"), flash
    screenshot(browser, tmp_path, "gallery-labelled")

    deadline = time.monotonic() + 15  # the daemon holds the store: it applies the queued label within seconds
    while True:
        found = next((c for c in cases_list(station.config) if c["id"] == case), None)
        assert found is not None, f"case {case} is not in 'cases list'"
        if found["label"] == label or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found["label"] == label, f"case {case} not labelled {label!r} in 'cases list' after 15 s: {found}"
    assert found["snapshot"] == verdict["evidence"]
    assert "tom labelled case" in station.console.log_text()


def test_a_recalibration_dry_run_runs_to_its_result(station, browser, tmp_path):
    """The wizard as a technician uses it: a dry run of 40 frames, its progress bar moving, then the station's
    own PASS or FAIL with its numbers and histogram; nothing installed, nothing activated."""
    console, rec = station.console, station.rec
    make_active(station, "2")
    versions = sorted(p.name for p in station.models.iterdir() if p.name.isdigit())
    log_in(browser, console, "tom")
    browser.get(f"{console.url}/recalibrate")
    form = browser.find_element(By.ID, "recal-form")
    frames = form.find_element(By.NAME, "frames")
    assert frames.get_attribute("value") == "40"  # what acceptance needs for a 10 % false-reject target
    assert form.find_element(By.NAME, "dry_run").is_selected(), "a dry run is the default"
    interval = form.find_element(By.NAME, "interval_s")
    interval.clear()
    interval.send_keys("0.05")
    click_and_wait(browser, browser.find_element(By.ID, "recal-start"))
    seen: list[int] = []

    def finished(driver) -> bool:
        bars = driver.find_elements(By.ID, "recal-progress")
        if bars:
            with contextlib.suppress(TypeError, ValueError, WebDriverException):  # the page is being replaced
                seen.append(int(float(bars[0].get_attribute("value"))))
        return bool(driver.find_elements(By.ID, "recal-outcome"))

    wait(browser, finished, timeout=90, message="no result on the wizard's page")
    screenshot(browser, tmp_path, "recalibrate-result")
    assert any(0 < n < 40 for n in seen), f"the progress bar never moved: {seen[:20]}"
    results = [m for m in rec.on("result") if m.get("state") in ("passed", "failed", "error", "rejected")]
    assert len(results) == 1 and results[0]["id"].startswith("console-"), results
    reply = results[0]
    assert reply["dry_run"] is True and reply["version"] is None
    outcome = browser.find_element(By.ID, "recal-outcome").text
    assert outcome == {"passed": "PASS", "failed": "FAIL"}[reply["state"]], (outcome, reply)
    numbers = browser.find_element(By.ID, "recal-numbers").text
    assert f"{reply['threshold']['old']} → {reply['threshold']['new']}" in numbers
    assert f"{100 * reply['false_reject']['new']:.1f} %" in numbers
    histogram = browser.find_element(By.ID, "recal-histogram")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 100", histogram)
    assert not browser.find_elements(By.ID, "recal-activate"), "a dry run offers no activation"
    assert sorted(p.name for p in station.models.iterdir() if p.name.isdigit()) == versions
    assert active_version(station.models) == "2"
    assert not [e for e in page_errors(browser) if "/favicon.ico " not in e]
