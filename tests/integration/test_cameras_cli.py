"""``edge-ad cameras`` and ``edge-ad snapshot`` as real processes against Aravis' simulated GigE Vision camera."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.bundle.manifest import MANIFEST_NAME
from edge_ad.capture.genicam.aravis import INSTALL_HINT, aravis
from edge_ad.capture.genicam.discovery import CameraInfo
from edge_ad.commands.cameras import camera_table
from tests.support.station import edge_ad, station_config

pytestmark = pytest.mark.integration

CAMERA = "Aravis-Fake-EDGEAD01"


def snapshot_config(tmp_path: Path, bundle: Path, **genicam: object) -> Path:
    camera = {"genicam": genicam} if genicam else {}
    mode = "triggered" if genicam.get("trigger") == "software" else "free_run"  # what the config check demands
    return station_config(tmp_path, f"genicam://{CAMERA}", bundle, 1883, camera=camera, service={"mode": mode})


def bundle_with_roi(tiny_models: Path, tmp_path: Path, roi: tuple[int, int, int, int]) -> Path:
    """A copy of the tiny bundle whose manifest crops ``roi`` from the frame."""
    version = shutil.copytree(load_bundle(tiny_models / "tiny").path, tmp_path / "roi-bundle" / "1")
    manifest = load_bundle(version).manifest
    changed = manifest.model_copy(update={"input": manifest.input.model_copy(update={"roi": roi})})
    (version / MANIFEST_NAME).write_text(changed.model_dump_json(indent=1))
    return version


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("edge-ad: error:")]


@pytest.mark.usefixtures("fake_camera")
def test_cameras_lists_the_camera_with_its_pixel_format_and_exposure():
    proc = edge_ad("cameras", timeout=30)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["ID", "VENDOR", "MODEL", "SERIAL", "ADDRESS", "PROTOCOL", "FORMAT", "EXPOSURE", "STATE"]
    (row,) = [r for r in rows if r.startswith(CAMERA)]
    assert row.split() == [CAMERA, "Aravis", "Fake", "EDGEAD01", "127.0.0.1", "GigEVision", "Mono8", "10000", "µs",
                           "free"]  # fmt: skip


@pytest.mark.usefixtures("fake_camera")
def test_cameras_json_and_a_camera_held_by_another_application():
    proc = edge_ad("cameras", "--json", timeout=30)
    assert proc.returncode == 0, proc.stderr
    (found,) = [c for c in json.loads(proc.stdout) if c["id"] == CAMERA]
    assert found == {
        "id": CAMERA, "vendor": "Aravis", "model": "Fake", "serial": "EDGEAD01", "address": "127.0.0.1",
        "protocol": "GigEVision", "pixel_format": "Mono8", "exposure_us": 10000.0, "in_use": False, "error": "",
    }  # fmt: skip
    # this process takes control of the camera: the listing still reads it, and says it is in use
    # (Aravis 0.8.26 tries to take control for ~2.5 s and releases a non-controller as slowly: one run only)
    camera = aravis().Camera.new(CAMERA)
    device = camera.get_device()
    assert device.is_controller()
    try:
        held = edge_ad("cameras", "--json", timeout=30)
    finally:
        device.leave_control()
        del camera, device
    assert held.returncode == 0, held.stderr
    (found,) = [c for c in json.loads(held.stdout) if c["id"] == CAMERA]
    assert found["in_use"] is True and found["pixel_format"] == "Mono8" and found["exposure_us"] == 10000.0
    _, row = camera_table([CameraInfo(**found)])
    assert row.endswith("10000 µs  in use by another application"), row


def test_cameras_without_aravis_prints_the_install_hint():
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "gi" or name.startswith("gi."):
                    raise ImportError(f"No module named {name!r}")

        sys.meta_path.insert(0, Block())
        from edge_ad.cli import main

        sys.exit(main(["cameras"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("edge-ad: error: listing GenICam cameras needs Aravis") and line.endswith(INSTALL_HINT)


@pytest.mark.usefixtures("fake_camera")
def test_snapshot_writes_the_frame_with_the_roi_and_prints_fps_and_focus(tiny_models, tmp_path):
    roi = (100, 150, 200, 120)
    config = snapshot_config(tmp_path, bundle_with_roi(tiny_models, tmp_path, roi))
    out = tmp_path / "aim.png"
    proc = edge_ad("snapshot", "--config", str(config), "--out", str(out), "--frames", "5", timeout=30)
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(out))
    assert image.shape == (512, 512, 3)
    x, y, w, h = roi
    border = np.concatenate([image[y - 1, x - 1 : x + w + 1], image[y + h, x - 1 : x + w + 1],
                             image[y - 1 : y + h + 1, x - 1], image[y - 1 : y + h + 1, x + w]])  # fmt: skip
    assert (border == (0, 255, 0)).all()
    inside = image[y : y + h, x : x + w]
    assert (inside[..., 0] == inside[..., 2]).all()  # a Mono8 camera: no green inside the ROI
    lines = proc.stdout.splitlines()
    assert lines[0] == f"wrote {out}: 512x512 frame from Aravis Fake SN EDGEAD01 ({CAMERA})"
    fps = re.fullmatch(r"frame rate: ([0-9.]+) fps \(5 frames in [0-9.]+ s\)", lines[1])
    assert fps and 1 < float(fps.group(1)) < 500, lines[1]
    focus = re.match(r"focus: ([0-9.]+) \(variance of the Laplacian of the grey ROI x=100 y=150 200x120;", lines[2])
    assert focus and float(focus.group(1)) > 0, lines[2]
    assert lines[3].startswith("ROI: x=100 y=150 200x120")


@pytest.mark.usefixtures("fake_camera")
def test_snapshot_of_a_software_triggered_camera_fires_one_trigger_per_frame(tiny_models, tmp_path):
    config = snapshot_config(tmp_path, tiny_models / "tiny", trigger="software")
    out = tmp_path / "snapshot.png"
    proc = edge_ad("snapshot", "--config", str(config), "--out", str(out), "--frames", "3", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^frame rate: [0-9.]+ fps \(3 frames in ", proc.stdout, re.M), proc.stdout
    assert "focus: " in proc.stdout and "grey whole frame" in proc.stdout
    assert "no ROI: bundle " in proc.stdout
    assert cv2.imread(str(out)).shape == (512, 512, 3)


@pytest.mark.usefixtures("fake_camera")
def test_snapshot_of_a_camera_waiting_for_its_trigger_line_times_out_with_one_line(tiny_models, tmp_path):
    config = snapshot_config(tmp_path, tiny_models / "tiny", trigger="hardware", trigger_line="Line0")
    out = tmp_path / "snapshot.png"
    proc = edge_ad("snapshot", "--config", str(config), "--out", str(out), "--timeout", "1", timeout=30)
    assert proc.returncode == 2, proc.stdout
    assert errors(proc.stderr) == [
        f"edge-ad: error: no frame from Aravis Fake SN EDGEAD01 ({CAMERA}) in 1 s; the camera waits for a hardware "
        "trigger on Line0: trigger it, or set camera.genicam.trigger: free_run while aiming"
    ]
    assert not out.exists()
