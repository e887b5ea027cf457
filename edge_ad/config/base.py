"""Base model shared by every config section: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["EdgeAdModel"]


class EdgeAdModel(BaseModel):
    """Strict, immutable configuration model."""

    # inf/NaN are never a meaningful setting (connect_timeout_s: .inf ended in an OverflowError traceback)
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)
