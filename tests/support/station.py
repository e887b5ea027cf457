"""Write station configs and run ``edge-ad`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

__all__ = ["edge_ad", "start_daemon", "station_config"]


def station_config(tmp_path: Path, source: str | int, bundle: Path, port: int, **sections: dict | str) -> Path:
    """A station YAML under tmp_path; ``sections`` override/extend camera, model, mqtt, service (or set station)."""
    config = {
        "station": "test-station",
        "camera": {"source": source},
        "model": {"path": str(bundle)},
        "mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 5},
        "service": {"state_dir": str(tmp_path / "state")},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def edge_ad(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edge_ad.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def start_daemon(config: Path) -> subprocess.Popen:
    """``edge-ad run --config`` in the background (stop it with SIGTERM; read stderr with communicate)."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
