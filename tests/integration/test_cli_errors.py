"""Bad input: one line on stderr naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import shutil

import pytest

from tests.support.station import edge_ad, station_config

pytestmark = pytest.mark.integration


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-ad: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def frames(tmp_path):
    import cv2

    from tests.support.tiny_bundle import good_image

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), good_image(0))
    return folder


def test_missing_bundle(tmp_path, frames):
    config = station_config(tmp_path, str(frames), tmp_path / "models" / "nope", 1883)
    assert_one_line_error(edge_ad("run", "--config", str(config)), "models/nope: bundle not found", "edge-ad export")


def test_sha256_mismatch(tmp_path, frames, tiny_models):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models, copy, symlinks=True)
    bin_path = copy / "tiny" / "1" / "model.bin"
    data = bytearray(bin_path.read_bytes())
    data[100] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    config = station_config(tmp_path, str(frames), copy / "tiny", 1883)
    assert_one_line_error(
        edge_ad("run", "--config", str(config)), "model.bin: sha256 does not match manifest", "re-copy"
    )


def test_unknown_config_key(tmp_path, frames, tiny_models):
    config = station_config(tmp_path, str(frames), tiny_models / "tiny", 1883, camera={"fsp": 5})
    proc = edge_ad("run", "--config", str(config))
    assert_one_line_error(proc, "station.yaml: camera.fsp: unknown key; did you mean 'fps'?")
    check = edge_ad("config", "check", str(config))
    assert_one_line_error(check, "camera.fsp: unknown key")


def test_unreachable_camera(tmp_path, tiny_models):
    config = station_config(tmp_path, "/dev/video77", tiny_models / "tiny", 1883, camera={"open_timeout_s": 2})
    assert_one_line_error(edge_ad("run", "--config", str(config)), "camera.source: cannot open device '/dev/video77'")


def test_unwritable_state_dir(tmp_path, frames, tiny_models):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = station_config(
        tmp_path, str(frames), tiny_models / "tiny", 1883, service={"state_dir": str(blocker / "x")}
    )
    assert_one_line_error(edge_ad("run", "--config", str(config)), "service.state_dir: cannot write to")


def test_config_check_ok(tmp_path, frames, tiny_models):
    config = station_config(tmp_path, str(frames), tiny_models / "tiny", 1883)
    proc = edge_ad("config", "check", str(config))
    assert proc.returncode == 0 and "OK (station test-station)" in proc.stdout


def _copy(tiny_models, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models, copy, symlinks=True)
    return copy / "tiny", copy / "tiny" / "1"


def test_truncated_bin_and_altered_xml_are_refused(tmp_path, frames, tiny_models):
    model_dir, version = _copy(tiny_models, tmp_path)
    data = (version / "model.bin").read_bytes()
    (version / "model.bin").write_bytes(data[: len(data) // 2])
    config = station_config(tmp_path, str(frames), model_dir, 1883)
    assert_one_line_error(edge_ad("run", "--config", str(config)), "model.bin: size", "re-copy")
    (version / "model.bin").write_bytes(data)
    xml = (version / "model.xml").read_text()
    altered = xml.replace('version="11"', 'version="12"', 1)  # same size, different content
    assert altered != xml
    (version / "model.xml").write_text(altered)
    assert_one_line_error(edge_ad("run", "--config", str(config)), "model.xml: sha256 does not match manifest")


def test_model_with_another_input_shape_is_refused(tmp_path, frames, tiny_models):
    import json

    model_dir, version = _copy(tiny_models, tmp_path)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["input"]["height"] = manifest["input"]["width"] = 64  # the IR still takes 32 x 32
    (version / "manifest.json").write_text(json.dumps(manifest))
    config = station_config(tmp_path, str(frames), model_dir, 1883)
    assert_one_line_error(edge_ad("run", "--config", str(config)), "does not match manifest [1, 64, 64, 3]")


def test_model_that_outputs_nan_is_refused(tmp_path, frames, tiny_models):
    import json

    import numpy as np
    import openvino as ov

    from edge_ad.bundle import file_entry
    from edge_ad.inference.patchcore_graph import compose_patchcore

    model_dir, version = _copy(tiny_models, tmp_path)
    bank = np.load(version / "memory_bank.npy")
    bank[:] = np.nan
    poisoned = compose_patchcore(ov.Core().read_model(version / "features.xml"), bank, 3)
    ov.save_model(poisoned, version / "model.xml", compress_to_fp16=False)
    manifest = json.loads((version / "manifest.json").read_text())
    for name in ("model.xml", "model.bin"):  # a consistent bundle: only the numbers are wrong
        manifest["files"][name] = file_entry(version / name).model_dump()
    (version / "manifest.json").write_text(json.dumps(manifest))
    config = station_config(tmp_path, str(frames), model_dir, 1883, mqtt={"connect_timeout_s": 1})
    assert_one_line_error(
        edge_ad("run", "--config", str(config)), "FP32 itself does not reproduce", "(not a number)", "re-export"
    )
