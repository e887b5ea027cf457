"""OpenVINO inference on bundles: preprocessing, PatchCore scoring head, engine."""

from edge_ad.inference.engine import AnomalyModel, pick_device

__all__ = ["AnomalyModel", "pick_device"]
