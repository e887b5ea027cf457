"""OpenVINO inference on bundles: preprocessing, PatchCore scoring head, pinned precision, engine."""

from edge_ad.inference.device import pick_device
from edge_ad.inference.engine import AnomalyModel, InferPipeline
from edge_ad.inference.precision import RUN_VARIANTS, RunVariant, compile_pinned

__all__ = ["RUN_VARIANTS", "AnomalyModel", "InferPipeline", "RunVariant", "compile_pinned", "pick_device"]
