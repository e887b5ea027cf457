"""Model families, one module each; :func:`family` returns one by its recipe ``model.type``.

Each module defines ``FAMILY`` (a :class:`~edge_ad.export.families.base.Family`); importing one needs
the export extra (torch, anomalib).
"""

from __future__ import annotations

import importlib

from edge_ad.bundle.manifest import MODEL_TYPES
from edge_ad.export.families.base import Family

__all__ = ["Family", "family"]


def family(kind: str) -> Family:
    """The family of model type ``kind`` (one of :data:`edge_ad.bundle.manifest.MODEL_TYPES`)."""
    if kind not in MODEL_TYPES:
        raise ValueError(f"unknown model type {kind!r}; choose from {', '.join(MODEL_TYPES)}")
    return importlib.import_module(f"{__name__}.{kind}").FAMILY
