"""Runtime benchmark of an installed bundle: synchronous latency and AsyncInferQueue throughput.

Torch-free: runs on the device exactly as the daemon does (same engine, same preprocessing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_ad.bench.machine import machine
from edge_ad.bundle import Bundle
from edge_ad.calibrate.metrics import auroc, auroc_intervals
from edge_ad.commissioning.measure import candidates, relative_drift
from edge_ad.datasets.layout import find_category, list_images, read_images
from edge_ad.errors import DatasetError, ModelLoadError
from edge_ad.inference.engine import AnomalyModel, InferPipeline
from edge_ad.inference.precision import RUN_VARIANTS, plugin_default_precision
from edge_ad.types import Frame, is_ng

__all__ = ["accuracy", "bench_runtime", "image_paths", "runnable_variants", "runtime_markdown"]


def runnable_variants(bundle: Bundle, device: str) -> list[str]:
    """The variants commissioning would measure here (bf16 on CPUs with native bf16, f16 on GPUs)."""
    return [run.name for run in candidates(bundle, device)[0]]


def _models(bundle: Bundle, device: str, skipped: dict[str, str]) -> Iterator[AnomalyModel]:
    """One compiled model per runnable variant, in turn (latency hint).

    A reduced-precision variant the plugin will not compile at its precision (it lists the
    capability, yet reports another precision) is skipped, its reason kept in ``skipped``.
    """
    for name in runnable_variants(bundle, device):
        try:
            yield AnomalyModel(bundle, name, device)
        except ModelLoadError as exc:
            if not RUN_VARIANTS[name].reduced:
                raise
            skipped[name] = str(exc)


def image_paths(bundle: Bundle, images: Path | None) -> list[Path]:
    """The benchmark's frames: the images of a folder, or the bundle's golden images."""
    paths = list_images(images) if images is not None else [bundle.path / g.file for g in bundle.manifest.golden]
    if not paths:
        raise DatasetError(f"--images: {images} has no images" if images else f"{bundle.path}: no golden images")
    return paths


def _frames(bundle: Bundle, images: Path | None, count: int) -> list[Frame]:
    decoded = read_images(image_paths(bundle, images), "--images" if images is not None else "golden image")
    return [Frame(image=decoded[i % len(decoded)], ts=0.0, index=i + 1) for i in range(count)]


def _sync(model: AnomalyModel, frames: list[Frame]) -> dict[str, float]:
    for frame in frames[:5]:
        model.infer(frame)
    latencies = []
    started = time.perf_counter()
    for frame in frames:
        t = time.perf_counter()
        model.infer(frame)
        latencies.append((time.perf_counter() - t) * 1000)
    seconds = time.perf_counter() - started
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "fps": len(frames) / seconds,
    }


def _pipelined(model: AnomalyModel, frames: list[Frame], jobs: int) -> float:
    pipeline = InferPipeline(model, jobs)
    for frame in frames[:5]:
        pipeline.submit(frame)
    pipeline.drain()
    started = time.perf_counter()
    done = 0
    for frame in frames:
        done += len(pipeline.submit(frame))
    done += len(pipeline.drain())
    seconds = time.perf_counter() - started
    assert done == len(frames)
    return len(frames) / seconds


def accuracy(bundle: Bundle, data: Path, device: str = "CPU") -> dict:
    """Image AUROC per run variant on every test image of ``data``; verdict agreement and score drift vs FP32."""
    items = find_category(data).test_images()
    images = read_images([path for path, _, _ in items], "test")
    labels = np.array([label for _, label, _ in items])
    result: dict = {"data": str(data), "test_images": len(items), "defects": int(labels.sum()), "auroc": {}}
    scores, verdicts = {}, {}
    for model in _models(bundle, device, result.setdefault("skipped", {})):
        name = model.variant_name
        scores[name] = model.score_images(images)
        result["auroc"][name] = auroc(labels, scores[name])
        verdicts[name] = is_ng(scores[name], model.threshold)
    result["intervals"] = auroc_intervals(labels, scores)  # 95 % stratified bootstrap, paired across variants
    result["vs_fp32"] = {
        name: {
            "auroc_drop": result["auroc"]["fp32"] - result["auroc"][name],
            "verdict_agreement": float(np.mean(verdicts[name] == verdicts["fp32"])),
            "drift_max": float(relative_drift(scores[name], scores["fp32"]).max()),
        }
        for name in scores
        if name != "fp32"
    }
    return result


def bench_runtime(
    bundle: Bundle,
    images: Path | None = None,
    frames: int = 200,
    requests: tuple[int, ...] = (2, 4),
    device: str = "CPU",
) -> dict:
    """Latency (one request, latency hint) and throughput (N requests on N streams) per run variant.

    Throughput is compared twice: with the best single-request setup (latency hint, every core on
    one request) and with one request at a time on the same N-stream model (the pipelining gain).
    Frames are decoded up front; the timings include the runtime's ROI crop and resize.
    """
    import openvino as ov

    data = _frames(bundle, images, frames)
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    for model in _models(bundle, device, skipped):
        name = model.variant_name
        sync = _sync(model, data)
        row = {"variant": name, "precision": model.precision, **sync, "async": {}}
        for n in requests:
            queued = AnomalyModel(bundle, name, device, streams=n)
            single = _sync(queued, data)["fps"]  # the same throughput-compiled model, one request at a time
            fps = _pipelined(queued, data, n)
            row["async"][n] = {"fps": fps, "vs_latency_mode": fps / sync["fps"], "vs_single_request": fps / single}
        rows.append(row)
    m = bundle.manifest
    return {
        "bundle": str(bundle.path),
        "model": f"{m.model.type} {m.model.backbone} {m.input.width}x{m.input.height}",
        "layers": m.model.layers,
        "frames": frames,
        "device": device,
        "plugin_default_precision": plugin_default_precision(ov.Core(), device),
        "machine": machine(),
        "rows": rows,
        "skipped": skipped,
    }


def runtime_markdown(result: dict) -> str:
    """The result as a Markdown table."""
    requests = sorted({n for row in result["rows"] for n in row["async"]})
    columns = " | ".join(f"{n} req fps (× latency / × 1 req)" for n in requests)
    head = f"| variant | precision | p50 ms | p99 ms | sync fps | {columns} |"
    box = result["machine"]
    lines = [
        f"{result['model']} — {result['frames']} frames on {result['device']} ({box['cpu']}; CPU flags "
        f"{' '.join(box.get('cpu_flags', [])) or 'none of note'}; OpenVINO {box['openvino']}). "
        f"Unasked, the plugin would run float layers in {result.get('plugin_default_precision', '?')}.",
        "",
        head,
        "| --- " * (5 + len(requests)) + "|",
    ]
    for row in result["rows"]:
        cells = [
            f"{a['fps']:.1f} ({a['vs_latency_mode']:.2f}× / {a['vs_single_request']:.2f}×)"
            for a in (row["async"][n] for n in requests)
        ]
        sync = (
            f"| {row['variant']} | {row.get('precision', '?')} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['fps']:.1f} | "
        )
        lines.append(sync + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
