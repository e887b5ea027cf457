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

from edge_ad.bundle.signing import new_key_pair
from edge_ad.config.schema import valid_station
from edge_ad.errors import EdgeAdError

__all__ = ["InstallPlan", "install_service", "uninstall_service"]

logger = logging.getLogger(__name__)
UNITS = ("edge-ad@.service", "edge-ad-recalibrate@.service")
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
    commands: list[list[str]] = field(default_factory=list)
    start: bool = False  # the station was (or, on a scratch root, would be) started


def _unit_text(name: str, executable: str) -> str:
    template = Path(__file__).resolve().parents[2] / "systemd" / name
    if not template.is_file():
        raise EdgeAdError(f"install-service: unit template {template} missing; run it from the edge_ad checkout")
    return template.read_text().replace(PLACEHOLDER, executable)


def _executable() -> str:
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


def install_service(
    station: str, root: Path = Path("/"), bundle: Path | None = None, enable: bool = True
) -> InstallPlan:
    """Install one station: config (if absent), bundle copy, system user, units, enable + start.

    Args:
        station: Instance name (``edge-ad@<station>``), also the config file name.
        root: Filesystem root to install into.
        bundle: A model directory (``models/<name>``) to copy under ``/var/lib/edge-ad/models``.
        enable: Enable (and, on a real root, start) the station.
    """
    if not valid_station(station):
        raise EdgeAdError(f"install-service: '{station}' is not a valid station name (letters, digits, _ . -)")
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
        _write(plan, units / name, _unit_text(name, _executable()))
    if enable:
        wants = units / "multi-user.target.wants" / f"edge-ad@{station}.service"
        wants.parent.mkdir(parents=True, exist_ok=True)
        if not wants.is_symlink():
            wants.symlink_to("/etc/systemd/system/edge-ad@.service")
            plan.written.append(wants)
    plan.commands += [["systemd-sysusers"], ["systemctl", "daemon-reload"]]
    plan.commands += [["chown", "-R", "edge-ad:edge-ad", "/var/lib/edge-ad"]]
    plan.start = enable and config in plan.kept  # a config just written from the template is edited first
    if plan.start:
        plan.commands.append(["systemctl", "restart", f"edge-ad@{station}.service"])
    if real:
        _run(plan.commands)
    else:
        plan.commands = []  # a scratch root: nothing is run
    return plan


def uninstall_service(station: str, root: Path = Path("/"), purge: bool = False) -> InstallPlan:
    """Stop and disable a station; remove the units when no station is left; ``purge`` also its config/state."""
    plan = InstallPlan(station, root)
    real = root == Path("/")
    if real:
        _run([["systemctl", "disable", "--now", f"edge-ad@{station}.service"]], check=False)
    units = root / "etc/systemd/system"
    wants = units / "multi-user.target.wants" / f"edge-ad@{station}.service"
    removed = [wants] if wants.is_symlink() else []
    others = [p for p in (units / "multi-user.target.wants").glob("edge-ad@*.service") if p != wants]
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
    if real:
        _run([["systemctl", "daemon-reload"]], check=False)
    return plan


def _run(commands: list[list[str]], check: bool = True) -> None:
    for command in commands:
        logger.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise EdgeAdError(f"install-service: '{' '.join(command)}' failed: {result.stderr.strip()[:300]}")
