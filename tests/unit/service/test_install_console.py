"""install-service --console: the console's own unit, enabled only when asked, gone with uninstall-service."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ad.cli import main
from edge_ad.config.console import ConsoleConfig
from edge_ad.errors import EdgeAdError
from edge_ad.service import install
from edge_ad.service.install import PLACEHOLDER, edge_ad_command, install_service, uninstall_service

STATION = "line3-cam1"
REPO = Path(__file__).resolve().parents[3]
UNIT = "edge-ad-console@.service"


@pytest.fixture
def console_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console extra counts as installed, whether or not this environment has it."""
    monkeypatch.setattr(install, "_require_console", lambda: None)


def installed(root: Path, console: bool, config: str | None = "station: line3-cam1\n") -> install.InstallPlan:
    """install-service into ``root``; an existing ``config`` makes it start the station (and console)."""
    if config is not None:
        (root / "etc/edge-ad").mkdir(parents=True, exist_ok=True)
        (root / f"etc/edge-ad/{STATION}.yaml").write_text(config)
    return install_service(STATION, root, console=console)


def unit_sections(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_the_console_unit_is_always_installed_with_this_edge_ad_but_enabled_only_with_console(tmp_path, console_extra):
    units = tmp_path / "etc/systemd/system"
    wants = units / f"multi-user.target.wants/edge-ad-console@{STATION}.service"

    plan = installed(tmp_path, console=False)
    text = (units / UNIT).read_text()
    assert PLACEHOLDER not in text
    assert f"ExecStart={edge_ad_command()} console --config /etc/edge-ad/%i.yaml" in text
    assert not wants.exists() and not wants.is_symlink()
    assert ["systemctl", "restart", f"edge-ad@{STATION}.service"] in plan.commands
    assert not [c for c in plan.commands if any("console" in part for part in c)]
    assert plan.console_url is None and not plan.ran, "a scratch root runs nothing"

    plan = installed(tmp_path, console=True)
    assert wants.is_symlink() and str(wants.readlink()) == f"/etc/systemd/system/{UNIT}"
    station = plan.commands.index(["systemctl", "restart", f"edge-ad@{STATION}.service"])
    assert plan.commands.index(["systemctl", "restart", f"edge-ad-console@{STATION}.service"]) == station + 1
    assert plan.console_url == "https://127.0.0.1:8443/"


def test_a_template_config_enables_the_console_but_starts_neither(tmp_path, console_extra):
    plan = installed(tmp_path, console=True, config=None)
    assert (tmp_path / f"etc/systemd/system/multi-user.target.wants/edge-ad-console@{STATION}.service").is_symlink()
    assert not [c for c in plan.commands if c[:2] == ["systemctl", "restart"]] and not plan.start
    assert plan.console_url == "https://127.0.0.1:8443/", "the template has no console section: the defaults"


def test_no_enable_writes_the_console_unit_and_enables_nothing(tmp_path, console_extra):
    plan = install_service(STATION, tmp_path, enable=False, console=True)
    assert (tmp_path / "etc/systemd/system" / UNIT).is_file()
    assert not (tmp_path / "etc/systemd/system/multi-user.target.wants").exists()
    assert not [c for c in plan.commands if c[:2] == ["systemctl", "restart"]]


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ({}, "https://127.0.0.1:8443/"),
        ({"host": "0.0.0.0", "port": 9443}, "https://127.0.0.1:9443/"),
        ({"host": "192.168.10.5"}, "https://192.168.10.5:8443/"),
        ({"host": "::"}, "https://[::1]:8443/"),
        ({"host": "127.0.0.1", "tls": False, "port": 8080}, "http://127.0.0.1:8080/"),
    ],
)
def test_console_url_comes_from_the_console_section(section, url):
    assert ConsoleConfig.model_validate(section).url == url


def test_the_url_printed_is_the_stations_and_the_user_is_added_as_the_service_user(tmp_path, console_extra, capsys):
    config = "station: line3-cam1\nconsole: {host: 0.0.0.0, port: 9443}\n"
    (tmp_path / "etc/edge-ad").mkdir(parents=True)
    (tmp_path / f"etc/edge-ad/{STATION}.yaml").write_text(config)
    assert main(["install-service", STATION, "--root", str(tmp_path), "--console"]) == 0
    out = capsys.readouterr().out
    assert f"started  edge-ad@{STATION} edge-ad-console@{STATION} with its existing config" in out
    assert "console  https://127.0.0.1:9443/ ; add a user first: sudo -u edge-ad " in out
    assert f"console-user add --config /etc/edge-ad/{STATION}.yaml NAME --role technician" in out
    assert "ran " not in out, "a scratch root runs nothing"


def test_without_the_console_extra_console_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    root = tmp_path / "root"
    with pytest.raises(EdgeAdError) as exc:
        install_service(STATION, root, console=True)
    assert "pip install 'edge_ad[console]'" in str(exc.value) and "\n" not in str(exc.value)
    assert not root.exists()

    assert main(["install-service", STATION, "--root", str(root), "--console"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-ad: error: install-service --console: the console needs")
    assert not root.exists()


def test_uninstall_stops_and_removes_the_console_too(tmp_path, console_extra):
    units = tmp_path / "etc/systemd/system"
    wanted = units / "multi-user.target.wants"
    installed(tmp_path, console=True)
    install_service("line4-cam1", tmp_path, console=True)

    plan = uninstall_service(STATION, tmp_path)
    assert ["systemctl", "disable", "--now", f"edge-ad-console@{STATION}.service"] in plan.commands
    assert ["systemctl", "disable", "--now", f"edge-ad@{STATION}.service"] in plan.commands
    assert not (wanted / f"edge-ad-console@{STATION}.service").is_symlink()
    assert not (wanted / f"edge-ad@{STATION}.service").is_symlink()
    assert (units / UNIT).is_file(), "another station still has its console"

    uninstall_service("line4-cam1", tmp_path)
    assert not (units / UNIT).exists() and not (units / "edge-ad@.service").exists()
    assert list(wanted.iterdir()) == []


def test_the_console_unit_cannot_stop_or_start_the_station():
    """Ordered after the station and nothing more: stopping, failing or starting the console leaves it alone."""
    console = unit_sections(REPO / "systemd" / UNIT)
    for key in ("Requires", "Requisite", "BindsTo", "PartOf", "Conflicts", "Wants", "Upholds", "PropagatesStopTo"):
        assert "edge-ad@" not in console["Unit"].get(key, ""), key
    assert "edge-ad@%i.service" in console["Unit"]["After"]
    assert console["Install"]["WantedBy"] == "multi-user.target"
    station = (REPO / "systemd/edge-ad@.service").read_text()
    assert "console" not in station, "the station's unit knows nothing of the console"
    service = console["Service"]
    assert service["Type"] == "exec" and service["Restart"] == "on-failure" and service["User"] == "edge-ad"
    assert service["PrivateDevices"] == "yes" and service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert "143" in service["SuccessExitStatus"].split() and service["StateDirectory"] == "edge-ad edge-ad/%i"
    assert "OOMScoreAdjust" in service and "NotifyAccess" not in service and "WatchdogSec" not in service


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (scripts/setup.sh installs systemd)"
)
def test_systemd_analyze_verify_accepts_the_console_unit(tmp_path, console_extra):
    """As the station's units in tests/integration/test_service_install.py: an instance, no warnings."""
    installed(tmp_path / "root", console=True)
    work = tmp_path / "verify"
    work.mkdir()
    shutil.copyfile(tmp_path / "root/etc/systemd/system" / UNIT, work / UNIT)
    (work / f"edge-ad-console@{STATION}.service").symlink_to(work / UNIT)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(work / f"edge-ad-console@{STATION}.service")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_a_console_section_that_does_not_load_gives_the_default_url_and_a_warning(tmp_path, console_extra, caplog):
    plan = installed(tmp_path, console=True, config="station: line3-cam1\nconsole: {port: 0}\n")
    assert plan.console_url == "https://127.0.0.1:8443/"
    assert "URL from the console defaults" in caplog.text and "console.port" in caplog.text
