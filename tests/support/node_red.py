"""A real, headless Node-RED for the tests: find it, run a flow in a private user dir, fire inject nodes, stop it.

``scripts/setup.sh`` installs the pinned Node-RED into ``.node-red/`` of the checkout (outside the venv); a
``node-red`` on ``PATH`` is used otherwise. Node-RED runs with the editor off but the admin HTTP API on (on
127.0.0.1 only), which is what ``POST /inject/<id>`` (the editor's inject button) needs, and with
credential encryption off, so no prompt and no key file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port, wait_for_port

__all__ = ["NodeRed", "node_red_command", "run_flow"]

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".node-red" / "node_modules" / "node-red" / "red.js"  # where scripts/setup.sh installs it

SETTINGS = """\
// written by tests/support/node_red.py: headless, loopback only, nothing encrypted or fetched
module.exports = {
    uiHost: "127.0.0.1",
    flowFile: "flows.json",
    credentialSecret: false,
    disableEditor: true,
    httpNodeRoot: false,
    lang: "en-US",
    diagnostics: {enabled: false, ui: false},
    runtimeState: {enabled: false, ui: false},
    telemetry: {enabled: false, updateNotification: false},
    externalModules: {autoInstall: false},
    logging: {console: {level: "info", metrics: false, audit: false}},
};
"""


def node_red_command() -> list[str] | None:
    """The command that starts Node-RED: the copy setup.sh installed, else ``node-red`` on PATH; None if neither."""
    node = shutil.which("node")
    if node and LOCAL.is_file():
        return [node, str(LOCAL)]
    found = shutil.which("node-red")
    return [found] if found and node else None


@dataclass
class NodeRed:
    """A running Node-RED: its process (a process group of its own), admin port, user dir and log lines."""

    process: subprocess.Popen
    port: int
    user_dir: Path
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.log.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        """The log so far (stdout and stderr, one entry a line)."""
        with self._lock:
            return list(self.log)

    def wait_for_log(self, text: str, timeout: float = 30.0, fail_on: tuple[str, ...] = ()) -> str:
        """Wait until a log line contains ``text``; that line. Fails early if Node-RED exits or logs ``fail_on``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = next((line for line in self.lines() if text in line), None)
            if line is not None:
                return line
            failed = next((line for line in self.lines() if any(bad in line for bad in fail_on)), None)
            if failed is not None:
                raise RuntimeError(f"Node-RED logged {failed!r} before {text!r}:\n{self.tail()}")
            if self.process.poll() is not None:
                self._reader.join(2)
                raise RuntimeError(f"Node-RED exited {self.process.returncode} before {text!r}:\n{self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"no {text!r} in Node-RED's log after {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        """The last ``n`` log lines, for failure messages."""
        return "\n".join(self.lines()[-n:])

    def inject(self, node_id: str, payload: object | None = None, timeout: float = 5.0) -> None:
        """Fire an inject node as its button in the editor does; ``payload`` (JSON) replaces its configured one."""
        body = {}
        if payload is not None:
            body = {"__user_inject_props__": [{"p": "payload", "v": json.dumps(payload), "vt": "json"}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/inject/{node_id}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise RuntimeError(f"POST /inject/{node_id}: HTTP {response.status}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group (Node-RED stops its flows and exits), SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._reader.join(2)


@contextlib.contextmanager
def run_flow(flow: list[dict], user_dir: Path, command: list[str], timeout: float = 30.0) -> Iterator[NodeRed]:
    """Run ``flow`` in a fresh Node-RED (user dir ``user_dir``) until its flows are started; stop it afterwards.

    ``command`` comes from :func:`node_red_command`. Waiting for the flow's own nodes (an MQTT broker
    connection, say) is the caller's: :meth:`NodeRed.wait_for_log`.
    """
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "flows.json").write_text(json.dumps(flow, indent=2))
    settings = user_dir / "settings.js"
    settings.write_text(SETTINGS)
    port = free_port()
    env = {**os.environ, "LANG": "C.UTF-8", "NO_UPDATE_NOTIFIER": "1"}
    process = subprocess.Popen(
        [*command, "--userDir", str(user_dir), "--settings", str(settings), "--port", str(port), "flows.json"],
        cwd=user_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    red = NodeRed(process, port, user_dir)
    try:
        # a node type that is not installed (not a core node) keeps the flows from starting
        red.wait_for_log("Started flows", timeout, fail_on=("Waiting for missing types",))
        wait_for_port("127.0.0.1", port, timeout)
        yield red
    finally:
        red.stop()
