"""OpenVINO inference: Frame -> Result for a verified bundle.

Only this package (and export) imports openvino. One compiled model; either one reused
InferRequest (lowest latency) or an ``AsyncInferQueue`` of several (throughput, results kept in
frame order by :class:`InferPipeline`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from edge_ad.bundle import Bundle
from edge_ad.errors import ModelLoadError, first_line
from edge_ad.inference.patchcore_graph import EMBEDDING_OUTPUT, MAP_OUTPUT, SCORE_OUTPUT, output_names
from edge_ad.inference.preprocess import to_batch
from edge_ad.types import Frame, Result

__all__ = ["AnomalyModel", "InferPipeline", "Scored", "available_devices", "load_model", "pick_device"]

logger = logging.getLogger(__name__)


def available_devices(core: ov.Core) -> list[str]:
    """Devices OpenVINO can see on this machine."""
    return list(core.available_devices)


def pick_device(core: ov.Core, requested: str) -> tuple[str, str | None]:
    """Choose the device to compile on.

    Returns:
        (device, note): ``note`` explains a fallback to CPU, or is None.
    """
    if requested.startswith("AUTO"):
        return requested, None
    devices = available_devices(core)
    base = requested.split(".")[0]
    if requested in devices or (requested == base and any(d.split(".")[0] == base for d in devices)):
        return requested, None
    return "CPU", f"device {requested} not available (have {', '.join(devices) or 'none'}); using CPU"


class AnomalyModel:
    """Compiled anomaly model loaded from a verified bundle.

    Args:
        bundle: Bundle whose sha256 has already been checked.
        variant: "int8" or "fp32"; int8 falls back to fp32 when the bundle has no usable int8 IR.
        device: OpenVINO device ("CPU", "GPU", "AUTO"); an absent device falls back to CPU.
        cache_dir: Compiled-blob cache directory, or None to disable caching. Never the CWD.
        streams: 1 compiles for latency (one request uses every core); N > 1 compiles N
            throughput streams for an :class:`InferPipeline` with N requests in flight.

    Raises:
        ModelLoadError: The IR cannot be read/compiled, or its I/O does not match the manifest.
    """

    def __init__(
        self,
        bundle: Bundle,
        variant: str = "int8",
        device: str = "CPU",
        cache_dir: Path | None = None,
        streams: int = 1,
    ):
        self.bundle = bundle
        self.streams = streams
        self.variant_name, self.variant = bundle.variant(variant)
        spec = bundle.manifest.input
        self.height, self.width, self.roi = spec.height, spec.width, spec.roi
        core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        self.device, self.fallback_note = pick_device(core, device)
        if self.fallback_note:
            logger.warning("%s", self.fallback_note)
        xml = bundle.path / self.variant.xml
        started = time.perf_counter()
        try:
            model = core.read_model(xml, bundle.path / self.variant.bin)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"{xml}: OpenVINO cannot read the IR ({first_line(exc)}); re-run 'edge-ad export'"
            ) from None
        self._check_io(model, xml)
        try:
            self.compiled = core.compile_model(model, self.device, _hints(streams))
        except RuntimeError as exc:
            raise ModelLoadError(f"{xml}: cannot compile on {self.device} ({first_line(exc)})") from None
        self.compile_ms = (time.perf_counter() - started) * 1000
        self.request = self.compiled.create_infer_request()
        self._score_out = self.compiled.output(SCORE_OUTPUT)
        self._map_out = self.compiled.output(MAP_OUTPUT)
        has_embedding = EMBEDDING_OUTPUT in output_names(self.compiled)
        self._embedding_out = self.compiled.output(EMBEDDING_OUTPUT) if has_embedding else None
        logger.info(
            "model %s v%s (%s) loaded on %s in %.0f ms",
            bundle.manifest.name,
            bundle.manifest.version,
            self.variant_name,
            self.device,
            self.compile_ms,
        )

    def _check_io(self, model: ov.Model, xml: Path) -> None:
        expected = [1, self.height, self.width, 3]
        if len(model.inputs) != 1:
            raise ModelLoadError(f"{xml}: expected 1 input, IR has {len(model.inputs)}; re-run 'edge-ad export'")
        shape = model.input(0).get_partial_shape()
        if shape.is_dynamic or list(shape.to_shape()) != expected:
            raise ModelLoadError(
                f"{xml}: input shape {shape} does not match manifest {expected}; re-run 'edge-ad export'"
            )
        missing = {SCORE_OUTPUT, MAP_OUTPUT} - output_names(model)
        if missing:
            raise ModelLoadError(f"{xml}: IR lacks output(s) {sorted(missing)}; re-run 'edge-ad export'")

    @property
    def embeds(self) -> bool:
        """Whether results carry an embedding (PatchCore bundles exported or refitted since it exists)."""
        return self._embedding_out is not None

    @property
    def threshold(self) -> float:
        """Decision threshold of the loaded variant (raw score space)."""
        return self.variant.threshold.value

    def batch(self, frame: Frame) -> np.ndarray:
        """The frame as this model's input tensor (ROI crop and resize)."""
        return to_batch(frame.image, self.height, self.width, self.roi)

    def read_result(self, request: ov.InferRequest, started: float) -> Result:
        """Score and copies of the anomaly map (and embedding) from a finished request."""
        score = float(request.get_tensor(self._score_out).data.reshape(-1)[0])
        anomaly_map = np.array(request.get_tensor(self._map_out).data[0], copy=True)
        embedding = None
        if self._embedding_out is not None:
            embedding = np.array(request.get_tensor(self._embedding_out).data.reshape(-1), dtype=np.float32)
        latency_ms = (time.perf_counter() - started) * 1000
        return Result(score=score, anomaly_map=anomaly_map, latency_ms=latency_ms, embedding=embedding)

    def infer(self, frame: Frame) -> Result:
        """Score one frame (synchronous)."""
        started = time.perf_counter()
        self.request.infer({0: self.batch(frame)})
        return self.read_result(self.request, started)

    def score_images(self, images: list[np.ndarray], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Raw scores of BGR images, in order (evaluation and calibration helper).

        ``progress`` is called with the number of images scored so far, after each one.
        """
        scores = []
        for i, image in enumerate(images):
            scores.append(self.infer(Frame(image=image, ts=0.0, index=i + 1)).score)
            if progress is not None:
                progress(i + 1)
        return np.array(scores)


AUTO_INT8_GAIN = 0.95  # variant auto: int8 must take at most this fraction of fp32's time


def int8_pays(int8_ms: float, fp32_ms: float) -> bool:
    """Whether ``variant: auto`` runs INT8: its median time is at most :data:`AUTO_INT8_GAIN` of FP32's."""
    return int8_ms <= AUTO_INT8_GAIN * fp32_ms


def _median_ms(model: AnomalyModel, frames: list[Frame], runs: int = 20) -> float:
    for frame in frames[:5]:
        model.infer(frame)
    return float(np.median([model.infer(frames[i % len(frames)]).latency_ms for i in range(runs)]))


def load_model(
    bundle: Bundle, variant: str, device: str, cache_dir: Path | None = None, streams: int = 1
) -> AnomalyModel:
    """The bundle's model on ``device``; ``variant="auto"`` runs INT8 only where it is faster here.

    INT8 pays on some CPUs and backbones and not on others (see BENCHMARKS.md), so "auto" times
    both accepted variants on the bundle's golden images and keeps INT8 only if its median is at
    most :data:`AUTO_INT8_GAIN` of FP32's.
    """
    if variant != "auto" or bundle.variant("int8")[0] != "int8":
        return AnomalyModel(bundle, variant, device, cache_dir, streams)
    images = [cv2.imread(str(bundle.path / g.file), cv2.IMREAD_COLOR) for g in bundle.manifest.golden]
    frames = [Frame(image=image, ts=0.0, index=i) for i, image in enumerate(images) if image is not None]
    if not frames:  # nothing to time with (the self-test will complain about unreadable golden images)
        return AnomalyModel(bundle, "int8", device, cache_dir, streams)
    # one compiled model at a time: the daemon's peak memory is that of one model, not two
    int8 = AnomalyModel(bundle, "int8", device, cache_dir, streams)
    ms8 = _median_ms(int8, frames)
    del int8
    fp32 = AnomalyModel(bundle, "fp32", device, cache_dir, streams)
    ms32 = _median_ms(fp32, frames)
    chosen = fp32
    if int8_pays(ms8, ms32):
        del fp32, chosen
        chosen = AnomalyModel(bundle, "int8", device, cache_dir, streams)  # from the compile cache when set
    logger.info(
        "variant auto: int8 %.2f ms, fp32 %.2f ms per frame on %s -> running %s",
        ms8,
        ms32,
        chosen.device,
        chosen.variant_name,
    )
    return chosen


def _hints(streams: int) -> dict[str, Any]:
    if streams <= 1:
        return {"PERFORMANCE_HINT": "LATENCY"}
    return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams)}


@dataclass
class Scored:
    """A finished inference with what was submitted alongside it."""

    frame: Frame
    result: Result
    model: AnomalyModel
    context: Any


class InferPipeline:
    """Several frames in flight on an ``AsyncInferQueue``; results come back in submission order.

    ``submit`` blocks only when every request is busy; ``ready`` returns what has finished (in
    order, never skipping an unfinished older frame); ``drain`` waits for everything.
    """

    def __init__(self, model: AnomalyModel, jobs: int) -> None:
        self.model = model
        self.queue = ov.AsyncInferQueue(model.compiled, max(1, jobs))
        self.queue.set_callback(self._done)
        self._lock = threading.Lock()
        self._order: deque[int] = deque()
        self._pending: dict[int, tuple[Frame, Any, float]] = {}
        self._finished: dict[int, Scored | Exception] = {}
        self._ticket = 0

    def _done(self, request: ov.InferRequest, ticket: int) -> None:
        with self._lock:
            frame, context, started = self._pending.pop(ticket)
        try:
            scored: Scored | Exception = Scored(frame, self.model.read_result(request, started), self.model, context)
        except Exception as exc:  # re-raised in the caller thread by ready()
            scored = exc
        with self._lock:
            self._finished[ticket] = scored

    def submit(self, frame: Frame, context: Any = None) -> list[Scored]:
        """Start scoring a frame; returns the results that finished meanwhile (in order)."""
        tensor = self.model.batch(frame)
        self._ticket += 1
        with self._lock:
            self._order.append(self._ticket)
            self._pending[self._ticket] = (frame, context, time.perf_counter())
        self.queue.start_async({0: tensor}, self._ticket)
        return self.ready()

    def ready(self) -> list[Scored]:
        """Finished results whose older frames have all finished too."""
        out: list[Scored] = []
        with self._lock:
            while self._order and self._order[0] in self._finished:
                item = self._finished.pop(self._order.popleft())
                if isinstance(item, Exception):
                    raise item
                out.append(item)
        return out

    def drain(self) -> list[Scored]:
        """Wait for every frame in flight; their results in order."""
        self.queue.wait_all()
        return self.ready()

    @property
    def in_flight(self) -> int:
        """Frames submitted and not yet returned."""
        return len(self._order)
