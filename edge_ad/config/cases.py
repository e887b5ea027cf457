"""Similar-case search section: where NG cases are remembered (Qdrant)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["CasesConfig"]


class CasesConfig(EdgeAdModel):
    """Every NG frame's embedding in Qdrant, for "have we seen this before?" (docs/cases.md)."""

    enabled: bool = Field(
        False, description="Remember NG frames in a Qdrant case store (needs: pip install 'edge_ad[cases]')."
    )
    path: Path | None = Field(
        None, description="Embedded (local, on-disk) store directory; default <service.state_dir>/cases. Not with url."
    )
    url: str | None = Field(
        None, description="Qdrant server URL (e.g. http://qdrant.plant:6333) for a fleet; default: embedded store."
    )
    api_key_env: str | None = Field(None, description="Environment variable holding the server's API key.")
    collection: str = Field(
        "edge_ad_cases",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Prefix of the Qdrant collections (one per embedding space, shared by every station).",
    )
    sample_ok: float = Field(0.0, ge=0, le=1, description="Fraction of OK frames remembered too (0: NG frames only).")
    max_cases: int = Field(
        10_000,
        ge=10,
        description="Most unlabelled cases kept for this station; the oldest go first. Labelled cases are kept.",
    )
    max_age_days: float | None = Field(
        90.0, gt=0, description="Unlabelled cases older than this are removed; null keeps them."
    )
    hint_min_similarity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="An NG verdict carries the label of the most similar labelled past case when it is at "
        "least this similar (cosine; 0.85 was right 99-100 % of the time on the synthetic data, BENCHMARKS.md).",
    )
    timeout_s: float = Field(5.0, gt=0, description="Server request timeout.")

    @model_validator(mode="after")
    def _one_location(self) -> CasesConfig:
        if self.url is not None and self.path is not None:
            raise ValueError("give cases.path (embedded store) or cases.url (server), not both")
        if self.api_key_env is not None and self.url is None:
            raise ValueError("cases.api_key_env needs cases.url (the embedded store has no key)")
        return self
