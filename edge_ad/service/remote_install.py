"""``cmd/install`` and ``cmd/rollback``: a signed bundle version offered by the plant, installed by the station itself.

Off by default (``fleet.accept_installs``). Offers are signed like every command (:mod:`command_auth`) and
the bundle they name must be signed by one of ``security.trusted_keys``. An install downloads the package
from an allowed file server into a staging folder inside the model directory, unpacks it strictly, verifies
every file and the signature there, moves it into place under **its own manifest version** (a signature
covers the version number, so it is never renumbered), commissions it on this hardware exactly as the
daemon's model reloader does (commissioning record, self-test) and only then activates it. A version that
fails commissioning is removed again: nothing changed. The model reloader swaps the active version in.
One command runs at a time (install or rollback); the work happens in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_ad.bundle.activation import activate_checked, rollback_target
from edge_ad.bundle.manifest import MANIFEST_NAME
from edge_ad.bundle.package import unpack
from edge_ad.bundle.store import (
    MAX_MANIFEST,
    Bundle,
    active_version,
    fsync_dir,
    load_bundle,
    load_private,
    place_version,
    private_copies,
    read_regular,
    store_writer,
)
from edge_ad.bundle.trust import Trust
from edge_ad.commissioning import load_model
from edge_ad.config import EdgeAdConfig
from edge_ad.config.loader import describe_errors
from edge_ad.errors import BundleError, EdgeAdError, ModelLoadError, first_line
from edge_ad.guard import RateLimitedLog
from edge_ad.inference.selftest import self_test
from edge_ad.publish.messages import SCHEMA_VERSION, InstallCommand, RollbackCommand
from edge_ad.publish.payloads import stamp
from edge_ad.publish.session import Delivery, ReplyRoute
from edge_ad.service.command_auth import CommandRejected, CommandVerifier
from edge_ad.service.download import DownloadError, download, tls_context, url_allowed

__all__ = ["CommandSlot", "InstallRunner", "RollbackRunner"]

logger = logging.getLogger(__name__)

OFFER_PREFIX = ".offer-"  # staging folders in the model directory (never a version: list_versions wants digits)
SPACE_MARGIN = 64 * 2**20  # free space kept beyond package + unpacked copy
STORE_WAIT_S = 1800.0  # an install waits this long for a recalibration writing the model store to finish


class _Refused(EdgeAdError):
    """The offered version was refused here (package, hashes, signature, self-test, acceptance): ``failed``."""

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.fields = fields


class CommandSlot:
    """One station command that changes the model at a time (install or rollback)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: str | None = None

    def take(self, what: str) -> str | None:
        """Claim the slot for ``what``; returns what is running instead (None: claimed)."""
        with self._lock:
            if self.running is not None:
                return self.running
            self.running = what
            return None

    def release(self) -> None:
        """The command finished."""
        with self._lock:
            self.running = None


class _Runner:
    """Shared by both commands: open and validate, reject (counted, rate-limited), reply, run in a worker."""

    name = ""
    command_type: type[InstallCommand] | type[RollbackCommand]

    def __init__(
        self,
        config: EdgeAdConfig,
        verifier: CommandVerifier,
        publish: Callable[[dict], None],
        respond: Callable[[ReplyRoute, dict], None] | None = None,
        *,
        trust: Trust,
        slot: CommandSlot | None = None,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.publish = publish
        self.respond = respond
        self.trust = trust
        self.slot = slot or CommandSlot()
        self.accepted = 0
        self.rejected = 0
        self._worker: threading.Thread | None = None
        self._log = RateLimitedLog(logger)
        self._prepare()

    def _prepare(self) -> None:
        """What a runner needs beyond the shared parts, made at construction (errors stop the station at start)."""

    def _reply(
        self, command_id: str | None, rollout: str | None, state: str, route: ReplyRoute | None, **fields: Any
    ) -> None:
        extra = {k: v for k, v in {"rollout": rollout, **fields}.items() if v is not None}  # absent, never null
        reply = {"schema": SCHEMA_VERSION, "id": command_id, "state": state, **stamp(), **extra}
        self.publish(reply)
        if route is not None and self.respond is not None:
            self.respond(route, reply)

    def _reject(
        self, command_id: str | None, rollout: str | None, reason: str, signed: bool, route: ReplyRoute | None
    ) -> None:
        """Count, log (once per cause a minute) and answer; unsigned junk only with its log line."""
        self.rejected += 1
        logged = self._log.warning(reason, "%s command rejected: %s", self.name, reason)
        if signed or logged:
            self._reply(command_id, rollout, "rejected", route, reason=reason)

    def _open(self, payload: bytes, route: ReplyRoute | None) -> Any:
        """The validated command, or None after rejecting it."""
        body: object = None
        try:
            body = self.verifier.open(payload)
            return self.command_type.model_validate(body)
        except (CommandRejected, ValidationError) as exc:
            if isinstance(exc, ValidationError):
                reason, signed = describe_errors(exc, self.command_type)[0], True
            else:
                reason, signed, body = str(exc), exc.answer, exc.body
            self._reject(*_echo(body), reason, signed, route)
            return None

    def _model_dir(self) -> Path:
        """The station's model directory (``model.path``), where versions are installed and activated.

        Raises:
            BundleError: ``model.path`` names a version directory (activating would change nothing) or is missing.
        """
        path = self.config.model.path
        if (path / MANIFEST_NAME).is_file():
            raise BundleError(
                f"model.path {path} names one version directory: point it at its model directory ({path.parent}) "
                "so the station can switch its active version"
            )
        if not path.is_dir():
            raise BundleError(f"model.path {path}: no such model directory")
        return path

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        self._worker = threading.Thread(target=self._guarded, args=(target, *args), name=self.name, daemon=True)
        self._worker.start()

    def _guarded(self, target: Callable[..., None], command: Any, route: ReplyRoute | None, *args: Any) -> None:
        """Run the work; anything it raises is answered ``error`` with one line (the worker never dies silently)."""
        try:
            target(command, route, *args)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, EdgeAdError) else f"{type(exc).__name__}: {first_line(exc)}"
            if isinstance(exc, OSError):
                reason = f"{exc.filename or 'disk'}: {exc.strerror or first_line(exc)}; nothing was changed"
            logger.error("%s command %s: %s", self.name, command.id, reason)
            self._reply(command.id, command.rollout, "error", route, reason=reason, **self._echoed(command))
        finally:
            self.slot.release()

    def _echoed(self, command: Any) -> dict[str, Any]:
        """Fields every reply to an accepted command carries."""
        return {}

    @property
    def busy(self) -> bool:
        """Whether a command of this runner is being worked on."""
        return self._worker is not None and self._worker.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running command (daemon shutdown)."""
        if self._worker is not None:
            self._worker.join(timeout)


class InstallRunner(_Runner):
    """``cmd/install``: refuse or accept an offer (network thread), then download, verify, commission, activate.

    Args:
        config: The station's config (``fleet``, ``model``, ``service.state_dir``).
        verifier: Opens signed commands (shared with the station's other commands: one nonce memory).
        publish: Sends a reply on ``cmd/install/result``.
        respond: MQTT 5: a copy of a reply to the command's Response Topic.
        trust: The station's trust policy (the daemon's, with its private copies).
        slot: Shared with :class:`RollbackRunner`: one model-changing command at a time.

    Raises:
        ConfigError: ``fleet.ca_file`` is not a readable PEM file of certificates.
    """

    name = "install"
    command_type = InstallCommand

    def _prepare(self) -> None:
        self.tls = tls_context(self.config.fleet.ca_file)  # a bad fleet.ca_file stops the station at start

    def on_message(self, payload: bytes, delivery: Delivery | None = None) -> None:
        """Verify an offer and refuse what cannot be installed at once; else start the worker."""
        route = delivery.route if delivery is not None else None
        command: InstallCommand | None = self._open(payload, route)
        if command is None:
            return
        try:
            model_dir = self._model_dir()
            self._check_offer(command, model_dir)
        except BundleError as exc:
            self._reject(command.id, command.rollout, str(exc), True, route)
            return
        running = self.slot.take(f"install {command.id}")
        if running is not None:
            self._reject(command.id, command.rollout, f"busy: {running} is running; offer again later", True, route)
            return
        self.accepted += 1
        logger.info("install command %s: %s v%s from %s", command.id, command.bundle, command.version, command.url)
        self._start(self._install, command, route, model_dir)

    def _check_offer(self, command: InstallCommand, model_dir: Path) -> None:
        fleet = self.config.fleet
        if command.bundle != model_dir.name:
            raise BundleError(f"bundle: this station runs {model_dir.name!r}, not {command.bundle!r}")
        if not url_allowed(command.url, fleet.url_prefixes):
            raise BundleError("url: not under fleet.url_prefixes (or has '.'/'..' segments); nothing downloaded")
        if command.size > fleet.max_package_mb * 2**20:
            raise BundleError(
                f"size: {command.size / 2**20:.0f} MB, more than fleet.max_package_mb {fleet.max_package_mb:g}"
            )
        existing = installed_manifest_sha256(model_dir, command.version)
        if existing is not None and existing != command.manifest_sha256:
            raise BundleError(
                f"version: {model_dir / command.version} holds a different version {command.version} (another "
                "manifest); a signed version keeps its number: remove that folder or export a new version"
            )

    def _install(self, command: InstallCommand, route: ReplyRoute | None, model_dir: Path) -> None:
        reply = self._progress(command, route)
        version, target = command.version, model_dir / command.version
        previous = active_version(model_dir)
        existing = installed_manifest_sha256(model_dir, version)
        ours = existing is None  # else it must be this very version, installed before
        if existing is not None and existing != command.manifest_sha256:  # appeared since the offer was accepted
            raise BundleError(f"{target}: holds another version {version} now; nothing was changed")
        work = model_dir / f"{OFFER_PREFIX}{secrets.token_hex(4)}"
        writer = contextlib.ExitStack()  # the model store, from the download's end to the activation
        try:
            if ours:
                _clean_stale(model_dir)
                reply("downloading")
                _need_space(model_dir, 2 * command.size + SPACE_MARGIN)
                work.mkdir(mode=0o700)
                package = work / "package.tar"
                fleet = self.config.fleet
                download(command.url, package, command.size, fleet.download_timeout_s, self.tls)
                writer.enter_context(store_writer(model_dir.parent, "install", wait_s=STORE_WAIT_S))
                reply("verifying")
                staged = self._verify(command, package, work / version, model_dir)
                place_version(staged, model_dir)
            else:
                writer.enter_context(store_writer(model_dir.parent, "install", wait_s=STORE_WAIT_S))
                reply("verifying")
                try:
                    installed = load_bundle(target)  # every file's size and SHA-256, again
                except BundleError as exc:
                    raise _Refused(_short(exc)) from None
                self._check_trusted(installed)
            reply("commissioning")
            try:
                variant = self._commission(target)
            except BaseException:
                if ours:  # refused or broken here: the version goes again, nothing changed
                    _remove_version(target, model_dir)
                raise
            if command.activate:
                activate_checked(model_dir, version, self.trust)
        except _Refused as exc:
            logger.error("install command %s: v%s refused: %s", command.id, version, exc)
            reply("failed", reason=str(exc), **exc.fields)
            return
        finally:
            writer.close()
            shutil.rmtree(work, ignore_errors=True)
        now = active_version(model_dir)
        logger.info("install command %s: v%s installed (%s), active v%s", command.id, version, variant, now)
        reply("installed", version=version, previous=previous, active=now == version, variant=variant,
              selftest=True, acceptance=True)  # fmt: skip

    def _echoed(self, command: InstallCommand) -> dict[str, Any]:
        return {"offered": command.version}

    def _progress(self, command: InstallCommand, route: ReplyRoute | None) -> Callable[..., None]:
        def reply(state: str, **fields: Any) -> None:
            self._reply(command.id, command.rollout, state, route, **self._echoed(command), **fields)

        return reply

    def _verify(self, command: InstallCommand, package: Path, staged: Path, model_dir: Path) -> Path:
        """Unpack with the offered manifest hash, check every file and the signature where the version will live.

        Raises:
            _Refused: Not the offered package, a changed file, not signed by a trusted key.
        """
        try:
            manifest = unpack(package, staged, command.manifest_sha256)
            if (manifest.name, manifest.version) != (command.bundle, command.version):
                raise BundleError(
                    f"the package holds {manifest.name} v{manifest.version}, the offer says "
                    f"{command.bundle} v{command.version}"
                )
            bundle = load_bundle(staged)  # every file's size and SHA-256
            # judged as the folder it becomes: a signature covers the model name and version number
            self._check_trusted(Bundle(staged, bundle.manifest, bundle.raw, origin=model_dir / command.version))
        except BundleError as exc:
            raise _Refused(_short(exc)) from None
        return staged

    def _check_trusted(self, bundle: Bundle) -> None:
        """Refuse unless a trusted key (not only this station's key, not "unsigned is fine") signed it."""
        try:
            verdict = self.trust.check(bundle)
        except BundleError as exc:
            raise _Refused(_short(exc)) from None
        if not verdict.signed or verdict.key_id not in self.trust.keys:
            who = "not signed" if not verdict.signed else f"signed by {verdict.signer} (key {verdict.key_id})"
            raise _Refused(
                f"v{bundle.manifest.version} is {who}: an install needs a version signed by a key in "
                "security.trusted_keys (edge-ad export --sign-key)"
            )

    def _commission(self, target: Path) -> str:
        """Commission and self-test the installed version as the model reloader will (its record is reused).

        Returns:
            The variant this station runs for it.

        Raises:
            _Refused: Acceptance (commissioning) or the self-test failed on this hardware.
        """
        model_config, state_dir = self.config.model, self.config.service.state_dir
        bundle = load_private(target, private_copies(state_dir))  # what is verified is what is measured
        self._check_trusted(bundle)
        try:
            model = load_model(bundle, model_config, state_dir, context="install command")
        except (ModelLoadError, BundleError) as exc:
            raise _Refused(f"commissioning: {_short(exc)}", acceptance=False) from None
        try:
            self_test(model, model_config.selftest_tolerance)
        except ModelLoadError as exc:
            raise _Refused(_short(exc), acceptance=True, selftest=False) from None
        return model.variant_name


class RollbackRunner(_Runner):
    """``cmd/rollback``: leave ``from_version`` (it must be the active one) for the version a rollback goes to."""

    name = "rollback"
    command_type = RollbackCommand

    def on_message(self, payload: bytes, delivery: Delivery | None = None) -> None:
        """Verify; refuse a stale ``from_version`` or nothing to go back to; else roll back in the worker."""
        route = delivery.route if delivery is not None else None
        command: RollbackCommand | None = self._open(payload, route)
        if command is None:
            return
        running = self.slot.take(f"rollback {command.id}")  # first: an install under way changes what is active
        if running is not None:
            self._reject(command.id, command.rollout, f"busy: {running} is running; send it again later", True, route)
            return
        try:
            model_dir = self._model_dir()
            active = active_version(model_dir)
            if active != command.from_version:
                now = f"v{active} is" if active else "none is"
                raise BundleError(
                    f"from_version: v{command.from_version} is not the active version ({now}); nothing changed"
                )
            rollback_target(model_dir)  # there is something to go back to
        except BundleError as exc:
            self.slot.release()
            self._reject(command.id, command.rollout, _short(exc), True, route)
            return
        self.accepted += 1
        self._start(self._rollback, command, route, model_dir)

    def _rollback(self, command: RollbackCommand, route: ReplyRoute | None, model_dir: Path) -> None:
        active, target = rollback_target(model_dir)
        if active != command.from_version:  # changed since the command was accepted
            raise BundleError(f"from_version: v{command.from_version} is no longer active (v{active} is)")
        activate_checked(model_dir, target, self.trust)
        logger.info("rollback command %s: active v%s -> v%s", command.id, active, target)
        self._reply(command.id, command.rollout, "rolled_back", route, version=target, previous=active)


def installed_manifest_sha256(model_dir: Path, version: str) -> str | None:
    """SHA-256 of the manifest of installed ``version`` (None when not installed)."""
    path = model_dir / version
    if not path.is_dir() or path.is_symlink():
        return None
    try:
        return hashlib.sha256(read_regular(path / MANIFEST_NAME, MAX_MANIFEST)).hexdigest()
    except BundleError:
        return "unreadable"  # a broken folder of that number: never overwritten


def _need_space(model_dir: Path, needed: int) -> None:
    free = shutil.disk_usage(model_dir).free
    if free < needed:
        raise DownloadError(
            f"{model_dir}: {free / 2**20:.0f} MB free, the offer needs {needed / 2**20:.0f} MB (package and its "
            "unpacked copy); free space or remove old versions (edge-ad models list); nothing was changed"
        )


def _remove_version(target: Path, model_dir: Path) -> None:
    """Take a version that failed commissioning away again (renamed first: never half-deleted)."""
    doomed = model_dir / f"{OFFER_PREFIX}{target.name}-removing-{secrets.token_hex(4)}"
    os.rename(target, doomed)
    fsync_dir(model_dir)
    shutil.rmtree(doomed, ignore_errors=True)


def _clean_stale(model_dir: Path) -> None:
    """Staging folders a crashed or killed install left behind (only one install runs at a time)."""
    for path in model_dir.iterdir():
        if path.name.startswith(OFFER_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _short(exc: BaseException) -> str:
    """An error's first line (an install reply is one line)."""
    return first_line(exc)


def _echo(raw: object) -> tuple[str | None, str | None]:
    """(id, rollout) of a rejected command when plausible, so the sender can match the reply."""
    values = []
    for key in ("id", "rollout"):
        value = raw.get(key) if isinstance(raw, dict) else None
        values.append(value if isinstance(value, str) and 0 < len(value) <= 64 else None)
    return values[0], values[1]
