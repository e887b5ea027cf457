from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_ad.config import EdgeAdConfig
from edge_ad.config.camera import genicam_device

BASE = {"station": "line3-cam1", "model": {"path": "/models/brick"}}


def config(camera: dict, **service) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate({**BASE, "camera": camera, "service": service})


def test_genicam_sources_name_a_camera_or_the_first_one():
    assert genicam_device("genicam://Basler-acA1300-21234567") == "Basler-acA1300-21234567"
    assert genicam_device("genicam://192.168.10.20/") == "192.168.10.20"
    assert genicam_device("genicam://") == ""
    assert genicam_device("rtsp://cam/stream") is None and genicam_device(0) is None
    camera = config({"source": "genicam://"}).camera
    assert camera.genicam_trigger == "free_run" and config({"source": 0}).camera.genicam_trigger is None


@pytest.mark.parametrize(
    ("camera", "service", "message"),
    [
        ({"source": "/data/frames", "genicam": {}}, {}, "camera.genicam is set but camera.source '/data/frames'"),
        ({"source": "genicam://", "genicam": {"trigger": "software"}}, {}, "it needs service.mode: triggered"),
        ({"source": "genicam://", "genicam": {"trigger": "hardware"}}, {"mode": "triggered"}, "service.mode: free_run"),
        ({"source": "genicam://", "genicam": {"trigger": "hardware"}}, {"every_nth": 2}, "every_nth: 1"),
        ({"source": "genicam://", "genicam": {"pixel_format": "Mono16"}}, {}, "pixel_format"),
        ({"source": "genicam://", "genicam": {"buffers": 1}}, {}, "buffers"),
        ({"source": "genicam://", "genicam": {"packet_size": 100000}}, {}, "packet_size"),
        ({"source": "genicam://", "genicam": {"exposure": 100}}, {}, "exposure"),
    ],
)
def test_contradictions_and_bad_values_are_refused_with_the_key(camera, service, message):
    with pytest.raises(ValidationError, match=message):
        config(camera, **service)


def test_the_trigger_modes_that_fit_are_accepted():
    assert config({"source": "genicam://", "genicam": {"trigger": "software"}}, mode="triggered")
    assert config({"source": "genicam://", "genicam": {"trigger": "hardware", "trigger_line": "Line2"}})


def test_features_may_not_override_what_edge_ad_sets_itself():
    with pytest.raises(
        ValidationError, match=r"features\.TriggerMode: edge_ad sets TriggerMode from camera\.genicam\.trigger"
    ):
        config({"source": "genicam://", "genicam": {"trigger": "free_run", "features": {"TriggerMode": "On"}}})
    assert config({"source": "genicam://", "genicam": {"features": {"LineDebouncerTime": 10.0}}})


def test_a_misspelt_genicam_key_gets_a_suggestion(tmp_path):
    from edge_ad.config.loader import load_config
    from edge_ad.errors import ConfigError

    path = tmp_path / "station.yaml"
    path.write_text('station: s\ncamera: {source: "genicam://", genicam: {exposure: 100}}\nmodel: {path: /x}\n')
    with pytest.raises(ConfigError, match=r"camera\.genicam\.exposure: unknown key; did you mean 'exposure_us'\?"):
        load_config(path)


def test_the_config_offers_exactly_the_pixel_formats_the_runtime_reads():
    from typing import get_args

    from edge_ad.capture.genicam.pixels import SUPPORTED
    from edge_ad.config.camera import GenicamConfig

    (offered,) = [get_args(a) for a in get_args(GenicamConfig.model_fields["pixel_format"].annotation) if get_args(a)]
    assert sorted(offered) == sorted(SUPPORTED)
