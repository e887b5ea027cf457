"""``edge-ad install-service`` / ``uninstall-service``: config, bundles, system user and systemd units.

Everything is written below ``root`` (``/`` on a real machine, a scratch directory in tests);
``systemctl``/``systemd-sysusers`` are only run when ``root`` is ``/``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge_ad.bundle.signing import new_key_pair
from edge_ad.config.console import ConsoleConfig
from edge_ad.config.loader import read_yaml_model
from edge_ad.config.schema import valid_station
from edge_ad.errors import ConfigError, EdgeAdError, first_line

__all__ = ["InstallPlan", "edge_ad_command", "install_service", "uninstall_service"]

logger = logging.getLogger(__name__)
# all three are always installed; edge-ad-console@<station> is enabled only with --console
UNITS = ("edge-ad@.service", "edge-ad-recalibrate@.service", "edge-ad-console@.service")
INSTANCES = ("edge-ad-console", "edge-ad")  # enabled per station, stopped in this order
PLACEHOLDER = "/opt/edge-ad/.venv/bin/edge-ad"
STATION_KEYS = "var/lib/edge-ad/keys"  # the stations' own signing keys (readable by the service user only)
SYSUSERS = 'u edge-ad - "edge_ad inspection station" /var/lib/edge-ad\nm edge-ad video\n'


@dataclass
class InstallPlan:
    """What was (or would be) written."""

    station: str
    root: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # run on a real root; on a scratch root: planned
    ran: bool = False  # ``commands`` were run (root is ``/``)
    start: bool = False  # the station was (or, on a scratch root, would be) started
    console_url: str | None = None  # --console: where the technician opens it


def _unit_text(name: str, executable: str) -> str:
    template = Path(__file__).resolve().parents[2] / "systemd" / name
    if not template.is_file():
        raise EdgeAdError(f"install-service: unit template {template} missing; run it from the edge_ad checkout")
    return template.read_text().replace(PLACEHOLDER, executable)


def edge_ad_command() -> str:
    """This interpreter's ``edge-ad`` (the units' ``ExecStart``)."""
    script = Path(sys.executable).with_name("edge-ad")
    return str(script) if script.is_file() else f"{sys.executable} -m edge_ad.cli"


def _config_template(station: str, model: str) -> str:
    config = {
        "station": station,
        "camera": {"source": 0},
        "model": {"path": f"/var/lib/edge-ad/models/{model}", "device": "CPU", "variant": "auto"},
        "mqtt": {"host": "localhost", "port": 1883},
        "service": {"state_dir": f"/var/lib/edge-ad/{station}", "log_level": "INFO"},
        "security": {"trusted_keys": [], "station_key": f"/{STATION_KEYS}/{station}.key"},
    }
    head = (
        f"# Station {station}: edit camera.source, mqtt and model.path, then\n"
        f"#   edge-ad config check --user edge-ad /etc/edge-ad/{station}.yaml && systemctl restart edge-ad@{station}\n"
        "# Every key: docs/configuration.md\n"
    )
    return head + yaml.safe_dump(config, sort_keys=False)


def _write(plan: InstallPlan, path: Path, text: str, overwrite: bool = True) -> None:
    if path.exists() and not overwrite:
        plan.kept.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    plan.written.append(path)


class _ConsoleSection(BaseModel):
    """A station config read for its console section only (the rest may still be the template)."""

    model_config = ConfigDict(extra="ignore")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)


def _station_console(config: Path) -> ConsoleConfig:
    """The console section of the station's config; the defaults when it does not load (logged)."""
    try:
        return read_yaml_model(config, _ConsoleSection, "config file", "run install-service again").console
    except ConfigError as exc:
        logger.warning("install-service --console: URL from the console defaults: %s", first_line(exc))
        return ConsoleConfig()


def _require_console() -> None:
    from edge_ad.console import require_console

    try:
        require_console()
    except ConfigError as exc:
        raise EdgeAdError(f"install-service --console: {exc}; nothing was written") from None


def install_service(
    station: str, root: Path = Path("/"), bundle: Path | None = None, enable: bool = True, console: bool = False
) -> InstallPlan:
    """Install one station: config (if absent), bundle copy, system user, units, enable + start.

    Args:
        station: Instance name (``edge-ad@<station>``), also the config file name.
        root: Filesystem root to install into.
        bundle: A model directory (``models/<name>``) to copy under ``/var/lib/edge-ad/models``.
        enable: Enable (and, on a real root, start) the station.
        console: Also enable (and start with the station) its console, ``edge-ad-console@<station>``.

    Raises:
        EdgeAdError: A bad station name or bundle, ``console`` without the console extra (before anything
            is written), or a failed ``systemctl``.
    """
    if not valid_station(station):
        raise EdgeAdError(f"install-service: '{station}' is not a valid station name (letters, digits, _ . -)")
    if console:
        _require_console()  # the unit would run this interpreter's edge-ad: it needs the extra
    plan = InstallPlan(station, root)
    real = root == Path("/")
    if bundle is not None:
        if not bundle.is_dir():
            raise EdgeAdError(f"install-service --bundle: {bundle} is not a model directory (models/<name>)")
        target = root / "var/lib/edge-ad/models" / bundle.name
        if target.exists():
            plan.kept.append(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(bundle, target.with_name(target.name + ".incoming"), symlinks=True)
            (target.with_name(target.name + ".incoming")).rename(target)
            plan.written.append(target)
    model = bundle.name if bundle is not None else "MODEL"
    config = root / f"etc/edge-ad/{station}.yaml"
    _write(plan, config, _config_template(station, model), overwrite=False)
    key = root / STATION_KEYS / f"{station}.key"
    if key.exists():
        plan.kept.append(key)
    else:  # signs the versions this station's recalibrations write; mode 0600, owned by edge-ad below
        plan.written += list(new_key_pair(key.parent, station))
    _write(plan, root / "etc/sysusers.d/edge-ad.conf", SYSUSERS)
    units = root / "etc/systemd/system"
    for name in UNITS:
        _write(plan, units / name, _unit_text(name, edge_ad_command()))
    enabled = ["edge-ad"] + (["edge-ad-console"] if console else [])
    if enable:
        for unit in enabled:  # what `systemctl enable` does, so that images built with --root have it too
            wants = units / "multi-user.target.wants" / f"{unit}@{station}.service"
            wants.parent.mkdir(parents=True, exist_ok=True)
            if not wants.is_symlink():
                wants.symlink_to(f"/etc/systemd/system/{unit}@.service")
                plan.written.append(wants)
    plan.commands += [["systemd-sysusers"], ["systemctl", "daemon-reload"]]
    plan.commands += [["chown", "-R", "edge-ad:edge-ad", "/var/lib/edge-ad"]]
    plan.start = enable and config in plan.kept  # a config just written from the template is edited first
    if plan.start:  # the station first: a console that fails to start leaves it running
        plan.commands += [["systemctl", "restart", f"{unit}@{station}.service"] for unit in enabled]
    if console:
        plan.console_url = _station_console(config).url
    if real:
        _run(plan.commands)
        plan.ran = True
    return plan


def uninstall_service(station: str, root: Path = Path("/"), purge: bool = False) -> InstallPlan:
    """Stop and disable a station and its console; remove the units when no station is left.

    ``purge`` also removes its config and state.
    """
    plan = InstallPlan(station, root)
    real = root == Path("/")
    # one command each: a console unit that was never installed must not keep the station running
    stop = [["systemctl", "disable", "--now", f"{unit}@{station}.service"] for unit in INSTANCES]
    if real:
        _run(stop, check=False)
    units = root / "etc/systemd/system"
    wanted = units / "multi-user.target.wants"
    mine = [wanted / f"{unit}@{station}.service" for unit in INSTANCES]
    removed = [p for p in mine if p.is_symlink()]
    others = [p for unit in INSTANCES for p in wanted.glob(f"{unit}@*.service") if p not in mine]
    if not others:  # the last station: the templates go too
        removed += [units / name for name in UNITS if (units / name).exists()]
    if purge:
        removed += [
            p for p in (root / f"etc/edge-ad/{station}.yaml", root / f"var/lib/edge-ad/{station}") if p.exists()
        ]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        plan.written.append(path)
    plan.commands = [*stop, ["systemctl", "daemon-reload"]]
    if real:
        _run(plan.commands[-1:], check=False)
        plan.ran = True
    return plan


def _run(commands: list[list[str]], check: bool = True) -> None:
    for command in commands:
        logger.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise EdgeAdError(f"install-service: '{' '.join(command)}' failed: {result.stderr.strip()[:300]}")
