"""Similar-case search (edge_ad.cases.search) with the tiny PatchCore bundle and an embedded Qdrant store."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from edge_ad.bundle import load_bundle
from edge_ad.bundle.store import activate
from edge_ad.cases.search import ModelCache, load_model, similar_to_case, similar_to_image
from edge_ad.cases.store import Case, CaseStoreError, case_id, cases_dir, embedding_space, open_store
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import ConfigError
from tests.support.tiny_bundle import coloured_defect, defect_image, good_image, make_tiny_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """models/tiny with v1 and v2 (v2 active) and models/plain (no embedding), made once."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_bundle(root, "tiny")
    make_tiny_bundle(root, "tiny")
    make_tiny_bundle(root, "plain", embedding=False)
    return root


def station(tmp_path: Path, model: Path) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate(
        {
            "station": "press-3",
            "camera": {"source": str(tmp_path / "frames")},
            "model": {"path": str(model)},
            "service": {"state_dir": str(tmp_path / "state")},
            "cases": {"enabled": True},
        }
    )


@pytest.fixture
def config(tmp_path, bundles) -> EdgeAdConfig:
    shutil.copytree(bundles / "tiny", tmp_path / "models" / "tiny", symlinks=True)
    return station(tmp_path, tmp_path / "models" / "tiny")


def remember(config: EdgeAdConfig, images: list[np.ndarray]) -> list[int]:
    """Store ``images`` as cases (embedded with the station's model), as the daemon would; returns their ids."""
    model = load_model(config)
    space = embedding_space(model.bundle.manifest)
    store = open_store(config.cases, cases_dir(config))
    now, ids = time.time(), []
    try:
        for seq, image in enumerate(images):
            from edge_ad.types import Frame

            result = model.infer(Frame(image=image, ts=0.0, index=seq, origin=f"{seq}.png"))
            ident = case_id(now + seq, seq, "press-3")
            payload = {"station": "press-3", "time": f"t{seq}", "verdict": "NG", "score": result.score, "label": None}
            store.add(Case(ident, result.embedding, payload), space)
            ids.append(ident)
    finally:
        store.close()
    return ids


def test_an_image_finds_its_own_case_first(config):
    images = [coloured_defect(s) for s in range(8)]
    ids = remember(config, images)
    score, threshold, matches = similar_to_image(config, images[3], k=5)
    assert score > threshold  # a defect
    assert len(matches) == 5 and matches[0].id == ids[3] and matches[0].similarity > 0.99
    assert [m.similarity for m in matches] == sorted((m.similarity for m in matches), reverse=True)
    assert similar_to_image(config, good_image(1), k=5).score < threshold


def test_a_case_finds_its_most_similar_others_not_itself(config):
    ids = remember(config, [coloured_defect(s) for s in range(8)])
    case, matches = similar_to_case(config, ids[2], k=5)
    assert case.id == ids[2] and case.payload["time"] == "t2"
    assert len(matches) == 5 and ids[2] not in {m.id for m in matches}
    assert [m.similarity for m in matches] == sorted((m.similarity for m in matches), reverse=True)
    assert len(similar_to_case(config, ids[2], k=20).matches) == 7  # every other case, never itself
    with pytest.raises(CaseStoreError, match="no case with id 42"):
        similar_to_case(config, 42)


def test_an_empty_store_gives_no_matches(config):
    assert similar_to_image(config, defect_image(1)).matches == []


def test_a_bundle_without_embedding_is_a_clear_error(tmp_path, bundles):
    config = station(tmp_path, bundles / "plain")
    with pytest.raises(ConfigError, match="stfpm bundle gives no embedding; similar-case search needs a PatchCore"):
        similar_to_image(config, defect_image(1))
    with pytest.raises(ConfigError, match="gives no embedding"):
        ModelCache().score(config, defect_image(1))


def test_the_model_cache_reuses_the_model_until_another_version_is_active(config):
    cache = ModelCache()
    first = cache.score(config, defect_image(1))
    loaded = cache._model
    assert cache.version == load_bundle(config.model.path).path and cache.version.name == "2"
    again = cache.score(config, defect_image(1))
    assert cache._model is loaded and again[0] == first[0]
    activate(config.model.path, "1")  # a model swap (rollback): picked up at the next search
    cache.score(config, defect_image(1))
    assert cache._model is not loaded and cache.version.name == "1"


def test_cases_similar_cli_prints_the_matches_and_writes_the_sheet(config, tmp_path, capsys):
    from edge_ad.cli import main

    ids = remember(config, [coloured_defect(s) for s in range(3)])
    config_file = tmp_path / "station.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json", exclude_defaults=True)))
    query = tmp_path / "query.png"
    cv2.imwrite(str(query), coloured_defect(1))
    sheet = tmp_path / "sheet.png"
    args = ["cases", "similar", str(query), "-k", "2", "--sheet", str(sheet), "--config", str(config_file)]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cases"][0]["id"] == ids[1] and len(out["cases"]) == 2
    assert out["sheet"] == str(sheet) and cv2.imread(str(sheet)) is not None
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "query.png: score" in text and "(threshold" in text and str(ids[1]) in text
