"""The recalibration wizard: one signed command at a time, its progress, its result, activation only on a click.

The station side (collecting, fitting, acceptance) is the real daemon in the browser test; here the
command's replies come from a stand-in sender so every outcome can be shown.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge_ad.bundle.store import active_version
from edge_ad.config import EdgeAdConfig
from edge_ad.console.app import create_app, users_file
from edge_ad.console.recalibration import Wizard
from edge_ad.console.users import add_user
from edge_ad.errors import BrokerError
from tests.unit.console.conftest import PASSWORDS, closed_port, csrf_of, login

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def station(tmp_path: Path, models: Path, commands: bool = True) -> EdgeAdConfig:
    (tmp_path / "command.key").write_text("k" * 40 + "\n")
    extra = {
        "recalibration": {"mqtt_command": True, "defects_root": str(tmp_path / "defects")},
        "commands": {"secret_file": str(tmp_path / "command.key")},
    }
    config = EdgeAdConfig.model_validate(
        {
            "station": "press-3",
            "camera": {"source": str(tmp_path / "frames")},
            "model": {"path": str(models)},
            "mqtt": {"host": "127.0.0.1", "port": closed_port(), "connect_timeout_s": 1, "username": "press-3"},
            "service": {"state_dir": str(tmp_path / "state")},
            **(extra if commands else {}),
        }
    )
    for name, password in PASSWORDS.items():
        add_user(users_file(config), name, password, "viewer" if name == "vera" else "technician")
    return config


class Station:
    """Stands in for send_command: records commands and plays replies when the test releases them."""

    def __init__(self, replies: list[dict]) -> None:
        self.replies = replies
        self.commands: list[dict] = []
        self.go = threading.Event()

    def __call__(self, config, name, command, timeout_s):
        self.commands.append({"name": name, **command})
        for reply in self.replies:
            if reply["state"] != "collecting":
                assert self.go.wait(10)
            yield {"id": command["id"], **reply}


def client_for(config: EdgeAdConfig, sender=None) -> TestClient:
    app = create_app(config)
    if sender is not None:
        app.state.wizard.send = sender
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def wait_done(c: TestClient) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        progress = c.get("/recalibrate/progress").json()
        if progress["done"]:
            return progress
        time.sleep(0.02)
    raise AssertionError("the wizard's job never finished")


PASSED = {"state": "passed", "reason": "", "dry_run": False, "threshold": {"old": 0.5, "new": 0.52},
          "false_reject": {"old": 0.2, "new": 0.0}, "recall": {"old": None, "new": None}, "version": "3",
          "active": False, "histogram": "recalibration-20261202T010203.png"}  # fmt: skip


def test_a_recalibration_installs_and_activates_only_on_a_click(tmp_path, models):
    config = station(tmp_path, models)
    (tmp_path / "defects" / "scratches").mkdir(parents=True)
    sender = Station([{"state": "collecting", "frames": 40}, {"state": "collecting", "frames": 40, "collected": 12},
                      {"state": "fitting", "frames": 40}, PASSED])  # fmt: skip
    with client_for(config, sender) as c:
        login(c, "tom")
        page = c.get("/recalibrate").text
        assert 'id="recal-form"' in page and 'value="scratches"' in page
        started = c.post("/recalibrate", data={"csrf": csrf_of(page), "frames": "40", "interval_s": "0.1",
                                               "defects_dir": "scratches"})  # fmt: skip
        assert started.status_code == 303
        deadline = time.monotonic() + 5
        while c.get("/recalibrate/progress").json()["collected"] != 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        running = c.get("/recalibrate").text
        assert 'data-running="yes"' in running and '<progress id="recal-progress" max="40" value="12"' in running
        assert 'id="recal-form"' not in running  # one at a time
        again = c.post("/recalibrate", data={"csrf": csrf_of(running), "frames": "40"})
        assert "NOT started: a recalibration started by tom is still running" in c.get(again.headers["location"]).text
        sender.go.set()
        assert wait_done(c)["state"] == "passed"
        (config.service.state_dir / "recalibration").mkdir(parents=True)
        (config.service.state_dir / "recalibration" / PASSED["histogram"]).write_bytes(PNG)
        done = c.get("/recalibrate").text
        assert 'id="recal-outcome">PASS<' in done and "not active yet" in done
        assert f'src="/recalibrate/histogram/{PASSED["histogram"]}"' in done
        assert c.get(f"/recalibrate/histogram/{PASSED['histogram']}").content == PNG
        assert "0.0 %" in done and "20.0 %" in done and "Activate v3" in done
    command = sender.commands[0]
    assert command["name"] == "recalibrate" and command["activate"] is False and command["dry_run"] is False
    assert command["frames"] == 40 and command["interval_s"] == 0.1 and command["defects_dir"] == "scratches"
    assert active_version(models) == "2"  # nothing was activated by the wizard itself


def test_a_failed_dry_run_shows_why_and_offers_nothing(tmp_path, models):
    failed = {**PASSED, "state": "failed", "dry_run": True, "version": None, "active": None,
              "reason": "fp32: false rejects 12.0% on held-back good frames, target <= 10.0%"}  # fmt: skip
    sender = Station([{"state": "collecting", "frames": 40}, failed])
    sender.go.set()
    with client_for(station(tmp_path, models), sender) as c:
        login(c, "tom")
        c.post("/recalibrate", data={"csrf": csrf_of(c.get("/recalibrate").text), "frames": "40", "dry_run": "on"})
        wait_done(c)
        page = c.get("/recalibrate").text
    assert 'id="recal-outcome">FAIL<' in page and "target &lt;= 10.0%" in page and "recal-activate" not in page
    assert sender.commands[0]["dry_run"] is True


def test_a_station_that_cannot_be_reached_is_one_line(tmp_path, models):
    def unreachable(config, name, command, timeout_s):
        raise BrokerError("mqtt: no answer from 127.0.0.1:1 within 10 s")
        yield  # a generator, as send_command

    with client_for(station(tmp_path, models), unreachable) as c:
        login(c, "tom")
        c.post("/recalibrate", data={"csrf": csrf_of(c.get("/recalibrate").text), "frames": "40"})
        assert wait_done(c)["state"] == "error"
        page = c.get("/recalibrate").text
    assert 'id="recal-outcome">ERROR<' in page and "no answer from 127.0.0.1:1" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"frames": "many"}, "frames: &#39;many&#39; is not a whole number"),
        ({"frames": "4"}, "frames: 4 is outside 8..2000"),
        ({"frames": "40", "interval_s": "nan"}, "interval: nan s is outside 0..60"),
        ({"frames": "40", "defects_dir": "../../etc"}, "that defects folder is not one this station offers"),
    ],
)
def test_bad_form_values_are_one_line_and_start_nothing(tmp_path, models, form, message):
    sender = Station([])
    with client_for(station(tmp_path, models), sender) as c:
        login(c, "tom")
        response = c.post("/recalibrate", data={"csrf": csrf_of(c.get("/recalibrate").text), **form})
        assert message in c.get(response.headers["location"]).text
    assert sender.commands == []


def test_a_viewer_sees_no_form_and_cannot_start(tmp_path, models):
    sender = Station([])
    with client_for(station(tmp_path, models), sender) as c:
        login(c, "vera")
        page = c.get("/recalibrate").text
        assert "recal-form" not in page
        assert c.post("/recalibrate", data={"csrf": csrf_of(page), "frames": "40"}).status_code == 403
    assert sender.commands == []


def test_a_station_without_commands_says_how_to_turn_them_on(tmp_path, models):
    with client_for(station(tmp_path, models, commands=False)) as c:
        login(c, "tom")
        page = c.get("/recalibrate").text
        assert "recalibration.mqtt_command: false" in page and "recal-form" not in page
        response = c.post("/recalibrate", data={"csrf": csrf_of(page), "frames": "40"})
        assert (
            "NOT started: This station does not take recalibration commands" in c.get(response.headers["location"]).text
        )


@pytest.mark.parametrize(
    "name", ["../session.key", "recalibration-1.png", "x.png", "recalibration-20261202T010203.jpg"]
)
def test_only_histograms_are_served(tmp_path, models, name):
    config = station(tmp_path, models)
    folder = config.service.state_dir / "recalibration"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(PNG)
    (folder / "recalibration-1.png").write_bytes(PNG)
    (folder / "recalibration-20261202T010203.jpg").write_bytes(PNG)
    (folder / "recalibration-20261202T010204.png").symlink_to(config.service.state_dir / "console" / "session.key")
    with client_for(config) as c:
        login(c, "vera")
        assert c.get(f"/recalibrate/histogram/{name}").status_code == 404
        assert c.get("/recalibrate/histogram/recalibration-20261202T010204.png").status_code == 404  # a link


def test_the_wizard_reports_a_sender_that_ends_without_an_answer(tmp_path, models):
    def silent(config, name, command, timeout_s):
        yield {"id": command["id"], "state": "collecting", "frames": 8}

    wizard = Wizard(station(tmp_path, models), silent)
    job = wizard.start("tom", 8, 0.0, False, True)
    deadline = time.monotonic() + 5
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == "error" and "no answer from the station" in job.result["reason"]
