"""Similar past cases of an image or of a stored case: what ``edge-ad cases similar`` and the console's cases page show.

An image is embedded with the variant the station runs (as commissioned; never measured here, so a
busy station is not disturbed) and compared with the stored cases of its embedding space. A stored
case is compared by its stored embedding, and is not among its own matches. The store is opened as
``edge-ad cases`` opens it: a read-only copy while the running daemon holds the embedded store.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from edge_ad.cases.store import CaseStore, CaseStoreError, Match, cases_dir, embedding_space, open_store
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import ConfigError

if TYPE_CHECKING:
    from edge_ad.inference.engine import AnomalyModel

__all__ = [
    "CaseMatches",
    "ImageMatches",
    "ModelCache",
    "load_model",
    "recent_cases",
    "similar_to_case",
    "similar_to_image",
]


class ImageMatches(NamedTuple):
    """An image's anomaly score, the threshold it is judged against, and its most similar cases."""

    score: float
    threshold: float
    matches: list[Match]


class CaseMatches(NamedTuple):
    """A stored case and its most similar other cases."""

    case: Match
    matches: list[Match]


def load_model(config: EdgeAdConfig, path: Path | None = None) -> AnomalyModel:
    """The station's model (``path``: a version directory, default ``model.path``) in its commissioned variant.

    Raises:
        ConfigError: The bundle gives no embedding (not a PatchCore bundle of this version).
        BundleError, ModelLoadError: The bundle cannot be verified or loaded.
    """
    from edge_ad.bundle import load_bundle
    from edge_ad.commissioning import resolve_variant
    from edge_ad.inference.engine import AnomalyModel

    bundle = load_bundle(path or config.model.path)
    variant = resolve_variant(bundle, config.model, config.service.state_dir, commission_missing=False).variant
    model = AnomalyModel(bundle, variant, config.model.device)
    if not model.embeds:
        raise ConfigError(
            f"{bundle.path}: this {bundle.manifest.model.type} bundle gives no embedding; similar-case search needs "
            "a PatchCore bundle exported or recalibrated by this version"
        )
    return model


class ModelCache:
    """One loaded model, reused while ``model.path`` resolves to the same version directory (for the console).

    A newly activated version is loaded on the next search. Searches are serialised: the model has
    one infer request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: Path | None = None
        self._model: AnomalyModel | None = None

    def score(self, config: EdgeAdConfig, image: np.ndarray) -> tuple[float, float, np.ndarray, str]:
        """Score and embed ``image``: its score, the threshold, its embedding and its embedding space."""
        from edge_ad.bundle.store import resolve_version_dir

        with self._lock:
            version = resolve_version_dir(Path(config.model.path))
            if self._model is None or version != self._version:
                self._model, self._version = None, None  # a failed load leaves nothing stale behind
                self._model, self._version = load_model(config, version), version
            return _score(self._model, image)

    @property
    def version(self) -> Path | None:
        """The version directory of the loaded model, if any."""
        return self._version


def _score(model: AnomalyModel, image: np.ndarray) -> tuple[float, float, np.ndarray, str]:
    from edge_ad.types import Frame

    result = model.infer(Frame(image=image, ts=0.0, index=1, origin="query"))
    if result.embedding is None:  # load_model refuses such a model; a guard for type checkers
        raise ConfigError(f"{model.bundle.path}: the model gave no embedding")
    return result.score, model.threshold, result.embedding, embedding_space(model.bundle.manifest)


def _open(config: EdgeAdConfig) -> CaseStore:
    return open_store(config.cases, cases_dir(config), snapshot_if_busy=True)


def similar_to_image(
    config: EdgeAdConfig, image: np.ndarray, k: int = 5, models: ModelCache | None = None
) -> ImageMatches:
    """The ``k`` stored cases most similar to ``image`` (BGR, any size), with its score and threshold.

    Args:
        config: The station configuration (``model``, ``cases``, ``service.state_dir``).
        image: The part's image as OpenCV reads it.
        k: How many cases.
        models: A cache of the loaded model (the console); None loads the model for this call.

    Raises:
        ConfigError: The station's bundle gives no embedding.
        CaseStoreError: The store cannot be opened.
        BundleError, ModelLoadError: The bundle cannot be loaded.
    """
    if models is None:
        score, threshold, embedding, space = _score(load_model(config), image)
    else:
        score, threshold, embedding, space = models.score(config, image)
    store = _open(config)
    try:
        matches = store.similar(embedding, space, k=k)
    finally:
        store.close()
    return ImageMatches(score, threshold, matches)


def similar_to_case(config: EdgeAdConfig, ident: int, k: int = 5) -> CaseMatches:
    """Stored case ``ident`` and the ``k`` other stored cases most similar to it (by its stored embedding).

    Raises:
        CaseStoreError: No case has that id, or the store cannot be opened.
    """
    store = _open(config)
    try:
        found = store.vector(ident)
        if found is None:
            raise CaseStoreError(f"cases: no case with id {ident}; 'edge-ad cases list' shows the ids")
        case, vector = found
        space = case.payload.get("space")
        if not isinstance(space, str):
            raise CaseStoreError(f"cases: case {ident} does not say its embedding space; it cannot be compared")
        matches = [m for m in store.similar(vector, space, k=k + 1) if m.id != ident][:k]
    finally:
        store.close()
    return CaseMatches(case, matches)


def recent_cases(config: EdgeAdConfig, n: int = 20) -> tuple[int, list[Match]]:
    """How many cases are stored, and the ``n`` newest (newest first).

    Raises:
        CaseStoreError: The store cannot be opened.
    """
    store = _open(config)
    try:
        return store.count(), store.recent(n)
    finally:
        store.close()
