"""PatchCore: anomalib's patch embeddings, our coreset and our nearest-neighbour head in OpenVINO ops."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from torch import nn
from tqdm import tqdm

from edge_ad.calibrate.coreset import kcenter_greedy
from edge_ad.export.families.base import Family, Trained, ancestors, convert, find_output
from edge_ad.export.families.data import pre_processor
from edge_ad.export.recipe import ExportRecipe
from edge_ad.inference.patchcore_graph import EMBEDDING_OUTPUT, compose_patchcore, search_options

__all__ = ["FAMILY", "TrainedPatchcore", "patchcore_class"]


class _Embedder(nn.Module):
    """PatchCore's patch-embedding path (backbone, 3x3 average pool, upsample + concat)."""

    def __init__(self, patchcore_model: nn.Module) -> None:
        super().__init__()
        self.inner = patchcore_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.inner.feature_extractor(x)
        features = {layer: self.inner.feature_pooler(f) for layer, f in features.items()}
        return self.inner.generate_embedding(features)


@dataclass
class TrainedPatchcore(Trained):
    """PatchCore: our nearest-neighbour head (OpenVINO ops) on anomalib's patch embeddings."""

    def memory_bank(self) -> np.ndarray:
        """The fitted coreset ``[M, D]`` (float32)."""
        return self.module.model.memory_bank.detach().cpu().float().numpy()

    def features_ir(self) -> ov.Model:
        """uint8 frame -> patch embeddings ``[1, D, h, w]``."""
        model = convert(_Embedder(self.module.model).eval(), self.size)
        model.get_results()[0].input_value(0).get_tensor().set_names({EMBEDDING_OUTPUT})
        return model

    def scoring_ir(self) -> ov.Model:
        """Feature IR + nearest-neighbour head against the memory bank."""
        bank = self.memory_bank()
        return compose_patchcore(self.features_ir(), bank, **search_options(self.params, bank.shape[0]))

    def head_ops(self, scoring: ov.Model) -> list[str]:
        """Every op downstream of the embedding (the kNN head)."""
        embedding = find_output(scoring, EMBEDDING_OUTPUT)
        backbone = ancestors(embedding.get_node())
        return [op.get_friendly_name() for op in scoring.get_ordered_ops() if op.get_friendly_name() not in backbone]

    def write_extras(self, staging: Path, fp32: ov.Model, int8: ov.Model | None) -> None:
        """memory_bank.npy plus the feature IRs cut out of the scoring models."""
        np.save(staging / "memory_bank.npy", self.memory_bank())
        for name, model in (("features", fp32), ("features_int8", int8)):
            if model is not None:
                embedding = find_output(model, EMBEDDING_OUTPUT)
                sub = ov.Model([embedding], model.get_parameters(), "patchcore_features")
                ov.save_model(sub, staging / f"{name}.xml", compress_to_fp16=False)


def patchcore_class(coreset: str):
    """Anomalib's ``Patchcore`` with the coreset named by ``model.coreset`` and its time measured."""
    from anomalib.models import Patchcore

    class TimedPatchcore(Patchcore):
        """anomalib PatchCore whose coreset comes from :func:`kcenter_greedy` (unless ``coreset`` is "anomalib")."""

        seed = 0
        coreset_seconds = 0.0

        def fit(self) -> None:
            started = time.perf_counter()
            if coreset == "anomalib":
                super().fit()
            else:
                bank = torch.vstack(self.model.embedding_store)
                self.model.embedding_store.clear()
                n = max(1, int(bank.shape[0] * self.coreset_sampling_ratio))
                with tqdm(total=n, desc="coreset", unit="rows", leave=False) as bar:
                    idx = kcenter_greedy(
                        bank.numpy(), n, seed=self.seed, progress=bar.update, exact=coreset == "greedy"
                    )
                self.model.memory_bank = bank[torch.from_numpy(idx)]
            self.coreset_seconds = time.perf_counter() - started

    return TimedPatchcore


def _build(recipe: ExportRecipe) -> nn.Module:
    m = recipe.model
    module = patchcore_class(m.coreset)(
        backbone=m.backbone,
        layers=m.resolved_layers(),
        pre_trained=False,
        coreset_sampling_ratio=m.coreset_ratio,
        num_neighbors=m.num_neighbors,
        pre_processor=pre_processor(recipe),
        visualizer=False,
    )
    module.seed = recipe.seed
    return module


def _params(recipe: ExportRecipe, module: nn.Module) -> dict:
    m, bank = recipe.model, module.model.memory_bank
    fast = {"coarse_fraction": m.coarse_fraction, "exact_patches": m.exact_patches} if m.coarse_fraction else {}
    return {
        "coreset": m.coreset,
        "coreset_ratio": m.coreset_ratio,
        "num_neighbors": m.num_neighbors,
        **fast,
        "coreset_seconds": round(module.coreset_seconds, 3),
        "memory_bank_rows": int(bank.shape[0]),
        "feature_dim": int(bank.shape[1]),
    }


FAMILY = Family(build=_build, trained=TrainedPatchcore, params=_params)
