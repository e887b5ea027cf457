"""GenICam logic on real Aravis objects: pixel formats, checked feature writes, triggers and the software-trigger
binding, on Aravis' in-process fake camera (``Fake_1``: Aravis' own GenICam nodes, no network)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from edge_ad.capture.genicam.aravis import aravis
from edge_ad.capture.genicam.features import FeatureWriter, apply_settings
from edge_ad.capture.genicam.pixels import to_bgr
from edge_ad.capture.genicam.source import GenicamSource
from edge_ad.capture.poll import IDLE
from edge_ad.config import CameraConfig
from edge_ad.config.camera import GenicamConfig
from edge_ad.errors import CameraError
from tests.support.genicam import read_frames

MOSAIC = {"BayerRG8": "RGGB", "BayerBG8": "BGGR", "BayerGR8": "GRBG", "BayerGB8": "GBRG"}


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """What a sensor with this top-left 2x2 colour filter records of ``bgr``."""
    plane = {"B": 0, "G": 1, "R": 2}
    out = np.zeros(bgr.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = bgr[dy::2, dx::2, plane[colour]]
    return out


@pytest.mark.parametrize("pixel_format", list(MOSAIC))
def test_bayer_mosaics_are_debayered_to_the_colours_the_sensor_saw(pixel_format):
    """GenICam names a mosaic by its top-left cell; a wrong OpenCV code swaps red and blue (and fails this)."""
    scene = np.zeros((32, 32, 3), np.uint8)
    scene[:, :16] = (200, 40, 10)  # blue left half (BGR)
    scene[:, 16:] = (10, 40, 200)  # red right half
    image = to_bgr(mosaic(scene, MOSAIC[pixel_format]).tobytes(), 32, 32, pixel_format)
    assert image.shape == (32, 32, 3)
    left, right = image[8:24, 2:12].mean(axis=(0, 1)), image[8:24, 20:30].mean(axis=(0, 1))
    assert left[0] > 150 > left[2] and right[2] > 150 > right[0], (left, right)


def test_rgb_mono_and_padding():
    rgb = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3)
    assert np.array_equal(to_bgr(rgb.tobytes() + b"\0" * 5, 4, 2, "RGB8"), rgb[..., ::-1])
    assert np.array_equal(to_bgr(rgb.tobytes(), 4, 2, "BGR8"), rgb)
    mono = to_bgr(bytes(range(8)), 4, 2, "Mono8")
    assert np.array_equal(mono, cv2.cvtColor(np.arange(8, dtype=np.uint8).reshape(2, 4), cv2.COLOR_GRAY2BGR))
    with pytest.raises(ValueError, match="needs 24 bytes"):
        to_bgr(rgb.tobytes()[:-1], 4, 2, "RGB8")
    with pytest.raises(ValueError, match="Mono16 is not supported"):
        to_bgr(bytes(16), 4, 2, "Mono16")


@pytest.fixture(scope="module")
def fake_interface() -> None:
    aravis().enable_interface("Fake")


@pytest.fixture
def writer(fake_interface) -> Iterator[FeatureWriter]:
    camera = aravis().Camera.new("Fake_1")
    yield FeatureWriter(camera.get_device(), "Aravis Fake SN 1")


def test_settings_outside_the_cameras_limits_are_refused_naming_feature_range_and_camera(writer):
    cases = [
        ("exposure_us", "ExposureTimeAbs", 1e9, "1e+09 is outside the allowed range 10..1e+07"),
        ("gain_db", "GainRaw", 11.0, "11 is outside the allowed range 0..10"),
        ("gain_db", "GainRaw", 2.5, "2.5 is not a whole number"),
        ("pixel_format", "PixelFormat", "YUV", "'YUV' is not available; the camera offers BayerBG8"),
        ("features.AcquisitionMode", "AcquisitionMode", True, "True is not available"),
        ("features.TriggerSoftware", "TriggerSoftware", 1, "a GcCommand feature cannot be set"),
        ("features.Nope", "Nope", 1, "this camera has no such feature"),
        ("features.PixelFormatRegister", "PixelFormatRegister", 1, "a raw register cannot be set from the config"),
    ]
    for key, feature, value, message in cases:
        with pytest.raises(CameraError, match=r"^camera\.genicam\.") as err:
            writer.set(key, feature, value)
        assert message in str(err.value) and f"({feature} on Aravis Fake SN 1)" in str(err.value), str(err.value)
        assert key in str(err.value)
    writer.set("exposure_us", "ExposureTimeAbs", 2500.0)
    assert writer.device.get_float_feature_value("ExposureTimeAbs") == 2500


def test_apply_settings_sets_binning_before_the_region_and_the_hardware_trigger(writer):
    """Binning halves the sensor; the region is checked against the binned size; the frame-start trigger is
    taken from the line (the only path a PLC pulse takes, which the fake camera cannot pulse)."""
    settings = GenicamConfig(
        binning=(2, 2), region=(16, 8, 200, 100), exposure_us=1234, gain_db=4, pixel_format="Mono8",
        trigger="hardware", trigger_line="Line0", trigger_activation="RisingEdge",
        features={"AcquisitionMode": "Continuous"},
    )  # fmt: skip
    apply_settings(writer, settings, fps=None)
    device = writer.device
    got = {
        f: device.get_integer_feature_value(f) for f in ("BinningHorizontal", "OffsetX", "OffsetY", "Width", "Height")
    }
    assert got == {"BinningHorizontal": 2, "OffsetX": 16, "OffsetY": 8, "Width": 200, "Height": 100}
    assert [device.get_string_feature_value(f) for f in ("TriggerMode", "TriggerSource", "TriggerActivation")] == [
        "On", "Line0", "RisingEdge",
    ]  # fmt: skip
    device.set_string_feature_value("TriggerSelector", "AcquisitionStart")
    assert device.get_string_feature_value("TriggerMode") == "Off", "an acquisition-start trigger would hold frames"
    with pytest.raises(
        CameraError, match=r"trigger_line: 'Line1' is not available; the camera offers Line0, Software\b"
    ):
        apply_settings(writer, GenicamConfig(trigger="hardware", trigger_line="Line1"), fps=None)
    apply_settings(writer, GenicamConfig(), fps=12.5)  # free run at the camera's own frame rate
    assert device.get_string_feature_value("TriggerMode") == "Off"
    assert device.get_float_feature_value("AcquisitionFrameRate") == 12.5


def open_fake(**genicam) -> GenicamSource:
    return GenicamSource(CameraConfig(source="genicam://Fake_1", genicam={"pixel_format": "Mono8", **genicam}))


def ANYONE(token: object) -> bool:
    return True


def test_a_burst_of_software_triggers_gets_one_frame_each_in_order(fake_interface):
    """Ten fired at once: one in flight at a time, each frame carries its own trigger, frame ids consecutive."""
    lost: list[object] = []
    source = open_fake(trigger="software")
    try:
        assert not source.live, "every triggered frame is a part: none may be dropped"
        for i in range(10):
            source.fire(f"T{i}", ANYONE, lost.append)
        got = read_frames(source, 10)
    finally:
        source.close()
    assert [f.trigger for f in got] == [f"T{i}" for i in range(10)] and lost == []
    ids = [f.camera.frame_id for f in got]
    assert ids == list(range(ids[0], ids[0] + 10))
    assert all(f.camera.timestamp_ns > 0 and f.image.shape == (512, 512, 3) for f in got)


def line_pulses(source: GenicamSource, hz: float) -> None:
    """Aravis' in-process fake camera simulates pulses on its trigger line at ``hz`` (the network one cannot)."""
    source.device.get_fake_camera().set_trigger_frequency(hz)


def test_a_line_triggered_camera_judges_every_pulse_with_its_frame_id_and_waits_alive_between(fake_interface):
    source = open_fake(trigger="hardware", trigger_line="Line0", trigger_activation="RisingEdge")
    try:
        line_pulses(source, 0.5)
        read_frames(source, 2, seconds=6)  # right after a pulse at the new rate: the next one is 2 s away
        started = time.monotonic()
        assert [source.read() for _ in range(5)] == [IDLE] * 5, "no pulse: alive, no frame"
        assert time.monotonic() - started < 3
        with pytest.raises(CameraError, match="not in software-trigger mode"):
            source.fire("x", ANYONE, print)
        line_pulses(source, 20)
        got = read_frames(source, 5)
    finally:
        source.close()
    assert len(got) == 5 and all(f.trigger is None for f in got)
    ids = [f.camera.frame_id for f in got]
    assert ids == sorted(set(ids)) and all(f.camera.timestamp_ns > 0 for f in got)


def test_a_silent_camera_goes_offline_after_the_liveness_timeout(fake_interface):
    source = open_fake(trigger="hardware", trigger_line="Line0", liveness_timeout_s=0.5)
    try:
        line_pulses(source, 0.5)
        read_frames(source, 1, seconds=3)
        source._stop.set()  # the probe thread stops answering, as if every register read timed out
        time.sleep(0.6)
        with pytest.raises(CameraError, match=r"has not answered for \d s \(unplugged, powered off"):
            for _ in range(10):
                source.read()
    finally:
        source.close()


def test_an_unknown_camera_is_named_with_what_to_do(fake_interface):
    with pytest.raises(CameraError, match=r"no GenICam camera 'Nope-123' answers .*'edge-ad cameras' lists"):
        GenicamSource(CameraConfig(source="genicam://Nope-123"))
