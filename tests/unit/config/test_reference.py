from __future__ import annotations

from pathlib import Path

from edge_ad.config import EdgeAdConfig
from edge_ad.config.reference import render_reference

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_docs_match_schema():
    assert DOCS.read_text() == render_reference(), "regenerate: edge-ad config reference > docs/configuration.md"


def test_every_leaf_key_is_documented():
    text = render_reference()
    for section, model in EdgeAdConfig.model_fields.items():
        annotation = model.annotation
        keys = [f"{section}.{k}" for k in annotation.model_fields] if hasattr(annotation, "model_fields") else [section]
        for key in keys:
            assert f"| `{key}` |" in text
