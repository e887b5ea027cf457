"""Shared fixtures: a private mosquitto, a tiny torch-free bundle, and (export) a real trained bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.broker import Broker, start_mosquitto
from tests.support.genicam import FakeCamera
from tests.support.tiny_bundle import make_tiny_bundle

# fuzzing: bounded in the normal suite; `pytest --hypothesis-profile=long` for a deeper run
settings.register_profile("suite", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, for the whole session."""
    with start_mosquitto(tmp_path_factory.mktemp("mqtt")) as broker:
        yield broker
        assert broker.process.poll() is None, f"mosquitto exited early with code {broker.process.returncode}"


@pytest.fixture
def fake_camera() -> Iterator[FakeCamera]:
    """A simulated GigE Vision camera (Aravis' fake camera on loopback) for one test, killed afterwards."""
    camera = FakeCamera().start()
    try:
        yield camera
    finally:
        camera.kill()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding the tiny bundle ``tiny`` (version 1, active)."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_bundle(root)
    return root


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic brick category (training and test split)."""
    from edge_ad.datasets.synthetic import DatasetSpec, make_dataset

    return make_dataset(tmp_path_factory.mktemp("data"), ["brick"], DatasetSpec(train=40, test_good=16, test_defect=6))[
        0
    ]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, dataset: Path):
    """A real PatchCore bundle (FP32 + INT8) exported with every non-loopback connection failing."""
    from edge_ad.export.pipeline import export_bundle
    from edge_ad.export.recipe import ExportRecipe
    from tests.support.net import block_network

    models = tmp_path_factory.mktemp("models")
    with block_network() as attempts:
        result = export_bundle(ExportRecipe(data=dataset, out=models))
    result.blocked_attempts = attempts
    return result


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickly distilled EfficientAD PDN-S teacher, made through the CLI with the network blocked."""
    from edge_ad.cli import main
    from tests.support.net import block_network

    out = tmp_path_factory.mktemp("teacher") / "pdn_small.pth"
    with block_network() as attempts:
        assert main(["distill-teacher", "--out", str(out), "--steps", "12", "--image-size", "64"]) == 0
    assert out.is_file() and not attempts
    return out
