"""The runtime (load a bundle, score frames, publish) never imports torch, anomalib, nncf or lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FORBIDDEN = ("torch", "anomalib", "nncf", "lightning", "timm", "skimage")


def test_runtime_path_is_torch_free(tiny_models):
    code = textwrap.dedent(
        f"""
        import sys
        import edge_ad.cli, edge_ad.service, edge_ad.calibrate, edge_ad.capture, edge_ad.publish
        from edge_ad.bundle import load_bundle
        from edge_ad.inference import AnomalyModel
        from edge_ad.types import Frame
        from tests.support.tiny_bundle import good_image, defect_image

        model = AnomalyModel(load_bundle({str(tiny_models / "tiny")!r}), "fp32", "CPU")
        frames = [Frame(image=img, ts=0.0, index=1) for img in (good_image(1), defect_image(1))]
        scores = [model.infer(f).score for f in frames]
        assert scores[1] > model.threshold > scores[0], scores
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
        print("LOADED", loaded)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


def test_guard_is_able_to_fail():
    # the same check does see torch when something imports it
    code = "import sys, torch; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:1])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        import pytest

        pytest.skip("torch not installed (runtime-only environment)")
    assert "'torch'" in proc.stdout


def run_without(package: str, body: str) -> str:
    """Run ``body`` in a fresh interpreter where ``package`` cannot be imported (an extra not installed)."""
    code = textwrap.dedent(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == {package!r} or name.startswith({package + "."!r}):
                    raise ImportError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, Block())
        """
    ) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_runtime_needs_no_protobuf():
    # protobuf comes with the sparkplug extra: without it the station imports, and enabling Sparkplug is one line
    out = run_without(
        "google.protobuf",
        """
        import edge_ad.cli, edge_ad.service, edge_ad.service.preflight, edge_ad.publish.sparkplug.metrics
        from edge_ad.errors import ConfigError
        from edge_ad.publish.sparkplug import require_protobuf

        try:
            require_protobuf()
        except ConfigError as exc:
            print("REFUSED", exc)
        """,
    )
    assert "REFUSED sparkplug.enabled needs protobuf >= 6.31.1" in out
    assert "pip install 'edge_ad[sparkplug]'" in out


def test_the_runtime_needs_no_asyncua():
    # asyncua comes with the opcua extra: without it the station imports, and enabling OPC UA is one line
    out = run_without(
        "asyncua",
        """
        import edge_ad.cli, edge_ad.service.daemon, edge_ad.service.preflight
        import edge_ad.opcua.auth, edge_ad.opcua.certs, edge_ad.opcua.nodes
        from edge_ad.errors import ConfigError
        from edge_ad.opcua import require_asyncua

        try:
            require_asyncua()
        except ConfigError as exc:
            print("REFUSED", exc)
        """,
    )
    assert "REFUSED opcua.enabled needs asyncua >= 2.1" in out
    assert "pip install 'edge_ad[opcua]'" in out


def test_the_runtime_needs_no_pygobject():
    # PyGObject comes with the genicam extra: without it the station imports, and a genicam:// source is one line
    out = run_without(
        "gi",
        """
        import edge_ad.cli, edge_ad.service.daemon, edge_ad.capture.genicam.source, edge_ad.capture.genicam.discovery
        from edge_ad.capture import open_source
        from edge_ad.config import CameraConfig
        from edge_ad.errors import CameraError

        try:
            open_source(CameraConfig(source="genicam://cam-1"))
        except CameraError as exc:
            print("REFUSED", exc)
        """,
    )
    assert "REFUSED camera.source: genicam:// needs Aravis" in out
    assert "pip install 'edge_ad[genicam]'" in out and "gir1.2-aravis-0.8" in out


def test_the_console_and_the_fleet_tools_do_not_load_the_inference_engine():
    """The console runs beside the daemon on the same PC: it loads OpenVINO and OpenCV only when a page needs
    them (a similar-case search), so its memory stays small; the fleet commands never load them."""
    pytest.importorskip("fastapi")  # the console extra
    code = (
        "import sys\n"
        "import edge_ad.console.app, edge_ad.commands.fleet, edge_ad.fleet.rollout, edge_ad.fleet.view\n"
        "print(sorted(m for m in ('openvino', 'cv2', 'torch') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
