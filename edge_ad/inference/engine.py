"""OpenVINO inference: Frame -> Result for a verified bundle.

Only this package (and export) imports openvino. One compiled model, at an explicit precision
(:mod:`edge_ad.inference.precision`); either one reused InferRequest (lowest latency) or an
``AsyncInferQueue`` of several (throughput, results kept in frame order by :class:`InferPipeline`).
Which variant a station runs is decided by :mod:`edge_ad.commissioning`, not here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edge_ad.bundle import Bundle
from edge_ad.errors import ModelLoadError, first_line
from edge_ad.inference.compile_cache import CacheChanged, verified_cache
from edge_ad.inference.device import pick_device
from edge_ad.inference.patchcore_graph import EMBEDDING_OUTPUT, MAP_OUTPUT, SCORE_OUTPUT, output_names
from edge_ad.inference.precision import RUN_VARIANTS, compile_pinned, read_precision
from edge_ad.inference.preprocess import to_batch
from edge_ad.types import Frame, Result

__all__ = ["AnomalyModel", "InferPipeline", "Scored"]

logger = logging.getLogger(__name__)


class AnomalyModel:
    """Compiled anomaly model loaded from a verified bundle.

    Args:
        bundle: Bundle whose sha256 has already been checked.
        variant: Run variant (:data:`~edge_ad.inference.precision.RUN_VARIANTS`): ``fp32``, ``int8``,
            ``bf16`` or ``f16``. It names the IR and the precision; nothing is left to the plugin.
        device: OpenVINO device ("CPU", "GPU"); an absent device falls back to CPU.
        cache_dir: Compiled-blob cache directory (blobs checked against the station's ledger,
            :mod:`compile_cache`), or None to disable caching. Never the CWD.
        streams: 1 compiles for latency (one request uses every core); N > 1 compiles N
            throughput streams for an :class:`InferPipeline` with N requests in flight.

    Raises:
        ModelLoadError: Unknown variant, the IR cannot be read/compiled at its precision, or its
            I/O does not match the manifest.
        BundleError: The bundle has no usable IR for the variant.
    """

    def __init__(
        self,
        bundle: Bundle,
        variant: str = "fp32",
        device: str = "CPU",
        cache_dir: Path | None = None,
        streams: int = 1,
    ):
        if variant not in RUN_VARIANTS:
            raise ModelLoadError(f"variant {variant!r} unknown; choose from {', '.join(RUN_VARIANTS)}")
        self.bundle = bundle
        self.streams = streams
        self.run_variant = RUN_VARIANTS[variant]
        self.variant_name = variant
        self.variant = bundle.variant(self.run_variant.ir)
        # set by edge_ad.commissioning.load_model: golden-image scores this variant gave at commissioning on
        # this device (reduced precisions self-test against them), the decision's summary, and why a
        # configured variant does not run
        self.reference_scores: dict[str, float] | None = None
        self.commissioning: dict[str, Any] | None = None
        self.variant_note: str | None = None
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
        self.compiled = self._compile(core, model, cache_dir, xml)
        self.precision = read_precision(self.compiled)
        self.compile_ms = (time.perf_counter() - started) * 1000
        self.request = self.compiled.create_infer_request()
        self._score_out = self.compiled.output(SCORE_OUTPUT)
        self._map_out = self.compiled.output(MAP_OUTPUT)
        has_embedding = EMBEDDING_OUTPUT in output_names(self.compiled)
        self._embedding_out = self.compiled.output(EMBEDDING_OUTPUT) if has_embedding else None
        logger.info(
            "model %s v%s (%s, %s) loaded on %s in %.0f ms",
            bundle.manifest.name,
            bundle.manifest.version,
            self.variant_name,
            self.precision,
            self.device,
            self.compile_ms,
        )

    def _compile(self, core: ov.Core, model: ov.Model, cache_dir: Path | None, xml: Path) -> ov.CompiledModel:
        """Compile at the variant's pinned precision; a cached blob is used only if the station wrote it."""
        hints = _hints(self.streams)
        for attempt in (1, 2):
            cache = verified_cache(cache_dir) if cache_dir is not None else contextlib.nullcontext()
            try:
                with cache:
                    return compile_pinned(core, model, self.device, self.run_variant.precision, hints, str(xml))
            except CacheChanged as exc:
                if attempt == 2:
                    raise ModelLoadError(
                        f"{exc}, twice: something else writes the station's compile cache; stop it, or check "
                        "the owner of service.state_dir"
                    ) from None
        raise AssertionError("unreachable")

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
        """Decision threshold of the loaded variant's IR (raw score space)."""
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
        return self.infer_batch(self.batch(frame), started)

    def infer_batch(self, batch: np.ndarray, started: float | None = None) -> Result:
        """Score one input tensor already at model resolution (``[1, H, W, 3]`` uint8 BGR)."""
        started = time.perf_counter() if started is None else started
        self.request.infer({0: batch})
        return self.read_result(self.request, started)

    def score_images(
        self,
        images: list[np.ndarray],
        progress: Callable[[int], None] | None = None,
        latency_ms: list[float] | None = None,
    ) -> np.ndarray:
        """Raw scores of BGR images, in order (evaluation and calibration helper).

        ``progress`` is called with the number of images scored so far, after each one; ``latency_ms``
        collects each image's latency but the first one's (the warm-up).
        """
        scores = []
        for i, image in enumerate(images):
            result = self.infer(Frame(image=image, ts=0.0, index=i + 1))
            scores.append(result.score)
            if latency_ms is not None and i:
                latency_ms.append(result.latency_ms)
            if progress is not None:
                progress(i + 1)
        return np.array(scores)


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
        self.limit = 2 * max(1, jobs)  # frames held in flight at most (finished ones wait behind a slow one)
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
        """Start scoring a frame; returns the results that finished meanwhile (in order).

        Requests can finish out of order: results wait behind a slow older frame. At most twice the number
        of requests are held in flight; beyond that, submit waits for all of them (memory stays bounded).
        """
        tensor = self.model.batch(frame)
        if len(self._order) >= self.limit:
            self.queue.wait_all()
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
