"""Fuzzing (hypothesis): any config or manifest file gives a value or one EdgeAdError, never another exception."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from edge_ad.bundle import load_bundle
from edge_ad.config import load_config
from edge_ad.errors import EdgeAdError

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
SECTIONS = st.fixed_dictionaries(
    {"station": st.text(max_size=70), "camera": DOCS, "model": DOCS},
    optional={"mqtt": DOCS, "service": DOCS, "evidence": DOCS, "cases": DOCS, "recalibration": DOCS},
)


def _one_error(path: Path, load) -> None:
    try:
        load(path)
    except EdgeAdError as exc:
        assert "\n" not in str(exc).strip()


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_bytes_as_a_config_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "station.yaml"
        path.write_bytes(data)
        _one_error(path, load_config)


@given(SECTIONS)
def test_any_yaml_shaped_like_a_config(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "station.yaml"
        path.write_text(yaml.safe_dump(doc))
        _one_error(path, load_config)


@given(st.binary(max_size=300) | DOCS.map(lambda d: yaml.safe_dump(d).encode()))
def test_any_manifest_gives_a_bundle_or_one_bundle_error(tiny_models, data):
    with tempfile.TemporaryDirectory() as tmp:
        version = Path(tmp) / "1"
        shutil.copytree(tiny_models / "tiny" / "1", version)
        (version / "manifest.json").write_bytes(data)
        _one_error(version, load_bundle)
