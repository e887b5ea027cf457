"""``edge-ad bench --bundle``: every measurement of a bundle in one run, on the same images."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from edge_ad.bench.runtime import accuracy, bench_runtime, image_paths
from edge_ad.bundle import load_bundle
from edge_ad.commissioning import resolve_variant
from edge_ad.config import ModelConfig
from edge_ad.datasets.layout import read_images

__all__ = ["run_bench"]


def run_bench(
    bundle_path: Path,
    images: Path | None = None,
    frames: int = 200,
    requests: tuple[int, ...] = (2, 4),
    device: str = "CPU",
    data: Path | None = None,
    e2e_frames: int = 0,
    e2e_fps: float = 20.0,
    e2e_console: int = 0,
    e2e_console_browser: tuple[str, str] = ("httpx", "normal"),
    anomalib: bool = False,
    anomalib_layers: list[str] | None = None,
) -> dict:
    """All measurements of one bundle on the same images.

    Always runtime latency and throughput per run variant, and the commissioning decision (which
    variant ``auto`` runs on this machine, and why); with ``data`` AUROC per variant; with
    ``e2e_frames`` the daemon over MQTT, running the commissioned variant, and with ``e2e_console`` that
    many pairs of passes without and with the technician console streaming to its live pages
    (``e2e_console_browser``: which browser, at which CPU priority); with ``anomalib``
    anomalib's own PatchCore through its two inferencers (trained with ``anomalib_layers``, default
    the bundle's layers).
    """
    bundle = load_bundle(bundle_path)  # verifies every file's sha256: once for all the measurements
    result = bench_runtime(bundle, images, frames, requests, device)
    # what 'variant: auto' runs on this machine; not stored: no station's state directory is touched
    chosen = resolve_variant(bundle, ModelConfig(path=bundle.path, device=device), None, context="bench")
    assert chosen.record is not None
    result["commissioning"] = chosen.record.summary()
    paths = image_paths(bundle, images)
    if data is not None:
        result["accuracy"] = accuracy(bundle, data, device)
    if e2e_frames:
        from edge_ad.bench.endtoend import bench_end_to_end

        result["end_to_end"] = bench_end_to_end(bundle.path, paths, chosen.variant, e2e_frames, e2e_fps)
        if e2e_console:
            from edge_ad.bench.console_cost import bench_console_cost

            result["console_cost"] = bench_console_cost(
                bundle.path, paths, chosen.variant, fps=e2e_fps, pairs=e2e_console,
                browser=e2e_console_browser[0], browser_cpu=e2e_console_browser[1],
            )  # fmt: skip
    if anomalib and data is not None:
        from edge_ad.bench.anomalib_ref import bench_anomalib

        with contextlib.redirect_stdout(sys.stderr):  # Lightning prints; the table goes to stdout
            result["anomalib"] = bench_anomalib(
                data, bundle.manifest, read_images(paths, "--images"), frames, anomalib_layers
            )
    return result
