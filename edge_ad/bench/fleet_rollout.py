"""``edge-ad bench fleet --rollout``: time a staged rollout of a second version to every running station.

The benchmark signs two versions of the bundle with a key of its own (v1 is what every station runs,
v2 is packed with ``edge-ad models pack``'s code and served over HTTP on loopback), gives every station
its own model store, a broker login, a command key and ``fleet.accept_installs``, and after the
measured window runs ``edge-ad fleet rollout`` with ``canary`` canaries and a ``soak`` against the
live fleet: the time from start to "every station runs v2". Stations then publish stats 4 times per
soak (``service.stats_interval_s``), since the soak judges canaries by the stats of the new version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FleetPhase", "TimedRollout"]

PASSWORD = "bench"  # a loopback broker that lives for one benchmark
USERS = ("station", "operator")


class FleetPhase(Protocol):
    """A phase :func:`edge_ad.bench.fleet.bench_fleet` runs on the live fleet after the measured window."""

    def prepare(self, workdir: Path, bundle: Path) -> None:
        """Before any broker or station starts."""

    def broker_config(self) -> str:
        """Extra mosquitto lines for the brokers (say, a password file)."""

    def station_config(self, station: str, home: Path) -> dict[str, dict]:
        """Config sections merged into ``station``'s (``home``: its own folder)."""

    def run(self, fleet: Any) -> dict:
        """Run on the live fleet (an :class:`edge_ad.bench.fleet.Fleet`); what it measured."""

    def close(self) -> None:
        """Always called at the end, on errors too."""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class TimedRollout:
    """``edge-ad fleet rollout`` of a second, signed version with ``canary`` canaries and ``soak`` (e.g. ``10s``)."""

    def __init__(self, canary: int = 2, soak: str = "10s", timeout_s: float = 1800.0) -> None:
        from edge_ad.fleet.rollout_plan import parse_duration

        self.canary, self.soak, self.timeout_s = canary, soak, timeout_s
        # stations publish stats 4 times per soak (1 to 10 s apart): the soak needs some of the new version
        self.stats_interval_s = min(10.0, max(1.0, parse_duration(soak) / 4))
        self._server: ThreadingHTTPServer | None = None

    def prepare(self, workdir: Path, bundle: Path) -> None:
        """Sign v1 and v2, pack v2, write the logins and the command key, start the file server."""
        from edge_ad.bundle import install_bundle, load_bundle
        from edge_ad.bundle.package import pack
        from edge_ad.bundle.signing import load_private_key, new_key_pair, sign_manifest

        self.workdir = workdir / "rollout"
        self.workdir.mkdir()
        private, self.public = new_key_pair(self.workdir / "signing", "bench")
        key = load_private_key(private, "bench")
        source = load_bundle(bundle)
        staging = self.workdir / "staging"
        versions = []
        for _ in range(2):  # the same model as v1 and v2: what is timed is the rollout, not a model change
            shutil.rmtree(staging, ignore_errors=True)
            for name in source.manifest.files:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source.path / name, staging / name)
            signer = partial(lambda folder, k: sign_manifest(folder, k, "bench"), k=key)
            versions.append(install_bundle(staging, self.workdir / "workstation", source.manifest, sign=signer))
        shutil.rmtree(staging)
        self.v1, self.name = versions[0], source.manifest.name
        self.package = pack(versions[1], self.workdir / "files").path
        self.version = versions[1].name
        for user in USERS:
            (self.workdir / f"{user}.pw").write_text(PASSWORD + "\n")
        self.passwd = self.workdir / "passwd"
        self.passwd.touch()
        for user in USERS:
            subprocess.run(
                ["mosquitto_passwd", "-b", str(self.passwd), user, PASSWORD], check=True, capture_output=True
            )
        self.passwd.chmod(0o644)
        self.key = self.workdir / "command.key"
        self.key.write_text(os.urandom(32).hex() + "\n")
        handler = partial(_Quiet, directory=str(self.workdir / "files"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fleet-files").start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def broker_config(self) -> str:
        """Stations and the operator log in; the benchmark's own clients stay anonymous."""
        return f"allow_anonymous true\npassword_file {self.passwd}\n"

    def station_config(self, station: str, home: Path) -> dict[str, dict]:
        """Its own model store with v1 active, the broker login, the command key, installs accepted."""
        store = home / "models" / self.name
        store.mkdir(parents=True)
        shutil.copytree(self.v1, store / self.v1.name)
        (store / "active").symlink_to(self.v1.name)
        return {
            "model": {"path": str(store)},
            "service": {"stats_interval_s": self.stats_interval_s},  # the soak judges the canaries by their stats
            "mqtt": {"username": "station", "password_file": str(self.workdir / "station.pw")},
            "commands": {"secret_file": str(self.key)},
            "security": {"trusted_keys": [str(self.public)]},
            "fleet": {"accept_installs": True, "url_prefixes": [self.url]},
        }

    def run(self, fleet: Any) -> dict:
        """``edge-ad fleet rollout`` to every station, through the broker the stations use; timed."""
        broker = fleet.station_broker
        command = [
            sys.executable, "-m", "edge_ad.cli", "fleet", "rollout", str(self.package), "--base-url", self.url,
            "--stations", "fleet-*", "--canary", str(self.canary), "--soak", self.soak,
            "--broker", f"{broker.host}:{broker.port}", "--username", "operator",
            "--password-file", str(self.workdir / "operator.pw"), "--key", str(self.key),
            "--state-dir", str(self.workdir),
        ]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s)
        seconds = time.monotonic() - started
        (self.workdir / "rollout.log").write_text(done.stdout + done.stderr)
        return {
            "seconds": round(seconds, 1),
            "canaries": self.canary,
            "soak": self.soak,
            "stats_interval_s": self.stats_interval_s,
            "exit": done.returncode,
            "stations": len(fleet.stations),
            "version": self.version,
            "report": (done.stdout + done.stderr).strip().splitlines()[-40:],  # JSON only: why it stopped
        }

    def close(self) -> None:
        """Stop the file server."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
