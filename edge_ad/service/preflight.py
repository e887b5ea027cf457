"""``edge-ad config check``: what ``edge-ad run`` would refuse, found before the station starts.

Each check calls the function ``run`` itself calls (bundle verification, password and TLS loading,
opening a file source, the state directory's write probe), so the check cannot drift from the daemon.
Devices, streams and the broker are never contacted.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_ad.bundle import MANIFEST_NAME, load_bundle
from edge_ad.capture.sources import open_source
from edge_ad.cases.store import cases_dir, require_qdrant
from edge_ad.commissioning.resolve import compile_cache
from edge_ad.config import CameraConfig, CommandsConfig, EdgeAdConfig, MqttConfig, OpcUaConfig
from edge_ad.config.loader import writable_dir
from edge_ad.datasets.layout import list_images
from edge_ad.errors import BrokerError, CameraError, ConfigError, EdgeAdError, first_line
from edge_ad.opcua import require_asyncua
from edge_ad.opcua.auth import Logins
from edge_ad.opcua.certs import check_configured_pair
from edge_ad.publish.client import configure_security, read_password
from edge_ad.publish.sparkplug import require_protobuf
from edge_ad.publish.spool import SPOOL_FILES, check_spool
from edge_ad.service.command_auth import command_key

__all__ = ["ServiceUser", "preflight"]


@dataclass(frozen=True)
class ServiceUser:
    """The account ``run`` runs as (the unit's ``User=edge-ad``): name, uid and every group id.

    ``current`` is this process's user: the operating system decides for it (``os.access``, real
    writes). Another user is judged by owner/group/other permission bits of every path component,
    which ignores ACLs and systemd's sandbox (``ProtectSystem=strict`` leaves only the unit's
    ``StateDirectory``/``CacheDirectory``/``LogsDirectory`` writable).
    """

    name: str
    uid: int
    gids: frozenset[int]
    current: bool

    @classmethod
    def lookup(cls, name: str | None = None) -> ServiceUser:
        """``name`` from the user database; None: the user running this process.

        Raises:
            EdgeAdError: There is no such user.
        """
        uid = os.geteuid()
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:  # a container uid without a passwd entry
                return cls(str(uid), uid, frozenset(os.getgroups()) | {os.getegid()}, current=True)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EdgeAdError(f"--user {name}: no such user; give the User= of the unit (edge-ad)") from None
        gids = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_uid, gids, current=entry.pw_uid == uid)

    def denies(self, path: Path, mode: int) -> Path | None:
        """The component of ``path`` that keeps this user from ``mode`` on it, or None when allowed.

        ``mode`` combines ``os.R_OK``, ``os.W_OK``, ``os.X_OK``; every parent must also let the user enter.

        Raises:
            OSError: A component cannot be examined.
        """
        if self.current:
            return None if os.access(path, mode) else path
        if self.uid == 0:
            return None
        path = path.resolve()  # a symlink is followed: its target's permissions count
        for part in (*reversed(path.parents), path):
            need = mode if part == path else os.X_OK
            st = part.stat()
            shift = 6 if st.st_uid == self.uid else 3 if st.st_gid in self.gids else 0
            if (st.st_mode >> shift) & need != need:
                return part
        return None


def preflight(config: EdgeAdConfig, user: ServiceUser | None = None, config_file: Path | None = None) -> list[str]:
    """Every problem that would make ``edge-ad run`` refuse ``config``, one line each: key, problem, fix.

    Checked: the config file (when given) and every file ``run`` reads are readable by ``user``; the
    bundle at ``model.path`` loads with every sha256 verified; a file-based ``camera.source`` (image
    folder, video file) opens with run's own opener, while devices and URLs are left alone; the
    MQTT password can be read and the TLS files parse; the command key (with ``recalibration.mqtt_command``) is
    set, readable and long enough; protobuf is installed (with ``sparkplug.enabled``); asyncua, the OPC UA
    passwords and certificate (with ``opcua.enabled``); ``service.state_dir``,
    the evidence and case directories are writable by ``user`` (or creatable: ``run`` creates them, this check does not;
    an existing one of the current user gets run's write probe); ``recalibration.defects_root`` is
    a folder. Not checked: cameras, the broker, the OpenVINO device.

    Args:
        config: A loaded config (paths resolved by ``load_config``).
        user: The service's user; default the user running this process.
        config_file: The YAML file, checked for being readable by ``user``.
    """
    user = user or ServiceUser.lookup()
    problems: list[str] = []
    if config_file is not None:
        _collect(problems, "config file", _readable, user, config_file, "config file")
    _collect(problems, "model.path", _check_model, config.model.path, user)
    _collect(problems, "camera.source", _check_camera, config.camera, user)
    _collect(problems, "mqtt", _check_password, config.mqtt, user)
    _collect(problems, "mqtt.tls", _check_tls, config.mqtt, user)
    state = config.service.state_dir
    dirs = [(state, "service.state_dir")]
    if config.evidence.enabled:
        dirs.append((config.evidence.dir or state / "evidence", "evidence.dir"))
    if config.cases.enabled:
        _collect(problems, "cases", require_qdrant)
        dirs.append((cases_dir(config), "cases.path"))
    if config.sparkplug.enabled:
        _collect(problems, "sparkplug", require_protobuf)
    if config.opcua.enabled:
        _collect(problems, "opcua", _check_opcua, config.opcua, user)
    failed: list[Path] = []
    for path, key in dirs:
        if any(path.is_relative_to(bad) for bad in failed):
            continue  # inside a directory already reported: one line per cause
        if not _collect(problems, key, _writable, user, path, key):
            failed.append(path)
    if state not in failed:
        _collect(problems, "service.state_dir", _check_state_files, state, user)
    if (root := config.recalibration.defects_root) is not None:
        _collect(problems, "recalibration.defects_root", _check_folder, root, user)
    if config.recalibration.mqtt_command:
        _collect(problems, "commands", _check_command_key, config.commands, user)
    return problems


def _collect(problems: list[str], key: str, check: Callable[..., object], *args: object) -> bool:
    """Run ``check(*args)``; an edge_ad error or OSError becomes one line naming ``key``. True if it passed."""
    try:
        check(*args)
    except EdgeAdError as exc:
        line = first_line(exc)
        problems.append(line if line.startswith(key) else f"{key}: {line}")
        return False
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        problems.append(f"{key}: cannot access{where} ({exc.strerror or exc}); fix the path or its permissions")
        return False
    return True


def _readable(user: ServiceUser, path: Path, key: str) -> None:
    """Raise ConfigError unless ``user`` may read ``path`` (a directory: also list and enter it)."""
    blocker = user.denies(path, os.R_OK | os.X_OK if path.is_dir() else os.R_OK)
    if blocker is not None:
        raise ConfigError(
            f"{key}: user {user.name} cannot read {path} (permissions of {blocker}); "
            f"make it readable by {user.name} (chown/chmod)"
        )


def _writable(user: ServiceUser, path: Path, key: str) -> None:
    """Raise ConfigError unless ``user`` can write in the directory ``path``, or create it."""
    path = path.absolute()
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p))
    if existing == path and user.current:
        writable_dir(path, key)  # run's own check: writes and removes a probe file
        return
    if not existing.is_dir():
        where = "" if existing == path else f"cannot create {path}: "
        raise ConfigError(f"{key}: {where}{existing} is not a directory; set {key} to a writable directory")
    blocker = user.denies(existing, os.W_OK | os.X_OK)
    if blocker is not None:
        verb = "write to" if existing == path else "create"
        raise ConfigError(
            f"{key}: user {user.name} cannot {verb} {path} (permissions of {blocker}); "
            f"give {user.name} write access (chown/chmod) or set {key} to a writable directory"
        )


def _check_model(path: Path, user: ServiceUser) -> None:
    bundle = load_bundle(path)  # run's check: the manifest and every file's size and sha256
    for name in (MANIFEST_NAME, *bundle.manifest.files):
        _readable(user, bundle.path / name, "model.path")


def _check_camera(camera: CameraConfig, user: ServiceUser) -> None:
    source = camera.source
    if not isinstance(source, str) or "://" in source or source.startswith("/dev/"):
        return  # a device or a stream (the test of OpenCVSource.is_file): only run opens it
    path = Path(source)
    if not path.exists():
        raise CameraError(
            f"camera.source: {path} does not exist; give a folder of images or a video file (check the path or mount)"
        )
    open_source(camera).close()  # run's opener: a folder lists its images, a video file is opened by OpenCV
    _readable(user, path, "camera.source")
    if path.is_dir():
        for image in list_images(path)[:1000]:  # each unreadable one would be skipped: a station with no frames
            _readable(user, image, "camera.source")


def _check_password(config: MqttConfig, user: ServiceUser) -> None:
    try:
        read_password(config)
    except BrokerError as exc:
        fix = (
            "set it where the service starts (systemd: Environment= or EnvironmentFile=)"
            if config.password_env
            else "put the password on the file's first line (under systemd a relative path is read "
            "from $CREDENTIALS_DIRECTORY)"
        )
        raise BrokerError(f"{exc}; {fix}") from None
    if config.password_file is not None and config.password_file.is_absolute():
        _readable(user, config.password_file, "mqtt.password_file")


def _check_tls(config: MqttConfig, user: ServiceUser) -> None:
    if config.tls is None:
        return
    client = mqtt.Client(CallbackAPIVersion.VERSION2)  # throwaway: nothing connects
    try:
        configure_security(client, config.model_copy(update={"username": None}))  # TLS only: password above
    except BrokerError as exc:
        raise BrokerError(f"{exc}; give PEM files that exist and parse (openssl x509 -in FILE -noout)") from None
    for key in ("ca", "cert", "key"):
        if (path := getattr(config.tls, key)) is not None:
            _readable(user, path, f"mqtt.tls.{key}")


def _check_opcua(config: OpcUaConfig, user: ServiceUser) -> None:
    require_asyncua()
    Logins(config.users)  # run's reader: every password file and variable
    for i, login in enumerate(config.users):
        if login.password_file is not None and login.password_file.is_absolute():
            _readable(user, login.password_file, f"opcua.users[{i}].password_file")
    if config.certificate is not None and config.private_key is not None:
        check_configured_pair(config.certificate, config.private_key)
        _readable(user, config.private_key, "opcua.private_key")
    if config.trusted_clients is not None and not config.trusted_clients.is_dir():
        raise ConfigError(f"opcua.trusted_clients: {config.trusted_clients} is not a folder; create it or fix the path")


def _check_command_key(config: CommandsConfig, user: ServiceUser) -> None:
    command_key(config)  # run's reader: set, readable, long enough
    if config.secret_file is not None and config.secret_file.is_absolute():
        _readable(user, config.secret_file, "commands.secret_file")


def _check_state_files(state: Path, user: ServiceUser) -> None:
    """What an earlier run (often as root) left in the state directory must be usable by ``user``."""
    check_spool(state)
    cache = compile_cache(state)
    for path in [*(state / name for name in SPOOL_FILES), cache, *sorted(cache.glob("*"))[:1000]]:
        if path.exists():
            _writable_file(user, path, "service.state_dir")


def _writable_file(user: ServiceUser, path: Path, key: str) -> None:
    blocker = user.denies(path, os.W_OK | (os.X_OK if path.is_dir() else 0) | os.R_OK)
    if blocker is not None:
        raise ConfigError(
            f"{key}: user {user.name} cannot write {path} (permissions of {blocker}; left by a run as another "
            f"user?); chown -R {user.name} {path.parent}"
        )


def _check_folder(root: Path, user: ServiceUser) -> None:
    if not root.is_dir():
        raise ConfigError(f"recalibration.defects_root: {root} is not an existing folder; create it or fix the path")
    _readable(user, root, "recalibration.defects_root")
