"""`edge-ad export` as a user runs it, in a process whose non-loopback connections all fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ad.bundle import load_bundle

pytestmark = [pytest.mark.export, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "tests" / "support" / "offline"


def offline_cli(*args: str, log: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(OFFLINE), os.environ.get("PYTHONPATH", "")]),
        "EDGE_AD_REPO": str(REPO),
        "EDGE_AD_BLOCKED_LOG": str(log),
        "HF_HUB_OFFLINE": "0",  # do not help: a download attempt must hit the guard
    }
    return subprocess.run(
        [sys.executable, "-m", "edge_ad.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_guard_blocks_downloads(tmp_path):
    log = tmp_path / "blocked.txt"
    code = "import urllib.request; urllib.request.urlopen('https://pypi.org', timeout=5)"
    env = {
        **os.environ,
        "PYTHONPATH": str(OFFLINE),
        "EDGE_AD_REPO": str(REPO),
        "EDGE_AD_BLOCKED_LOG": str(log),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and "blocked by test" in proc.stderr
    assert "pypi.org" in log.read_text()


def test_export_command_offline(tmp_path):
    log = tmp_path / "blocked.txt"
    data = offline_cli("make-dataset", str(tmp_path / "data"), "--categories", "gravel", "--train", "30", log=log)
    assert data.returncode == 0, data.stderr
    proc = offline_cli(
        "export",
        "--data",
        str(tmp_path / "data" / "gravel"),
        "--model",
        "patchcore",
        "--out",
        str(tmp_path / "models"),
        log=log,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "INT8 gate (ptq)" in proc.stdout and "-> PASS" in proc.stdout
    assert proc.stdout.startswith("\nbundle "), "library logs leak into the summary on stdout"
    bundle = load_bundle(tmp_path / "models" / "gravel")
    assert bundle.manifest.version == "1" and set(bundle.manifest.variants) == {"fp32", "int8"}
    assert bundle.manifest.variants["int8"].metrics["image_auroc"] >= 0.9
    assert not log.exists() or log.read_text() == "", f"network attempts: {log.read_text()}"


def test_export_without_defects_is_a_clear_error(tmp_path, dataset):
    import shutil

    copy = tmp_path / "cat"
    shutil.copytree(dataset / "train", copy / "train")
    shutil.copytree(dataset / "test" / "good", copy / "test" / "good")
    proc = offline_cli("export", "--data", str(copy), "--out", str(tmp_path / "models"), log=tmp_path / "log")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "needs at least 2 good and 2 defect images" in proc.stderr
