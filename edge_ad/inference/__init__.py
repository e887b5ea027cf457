"""OpenVINO inference on bundles: preprocessing, PatchCore scoring head, engine."""

from edge_ad.inference.engine import AnomalyModel, InferPipeline, load_model, pick_device

__all__ = ["AnomalyModel", "InferPipeline", "load_model", "pick_device"]
