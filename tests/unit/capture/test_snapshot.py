"""``edge-ad snapshot`` logic on real images: focus measure, ROI drawing, frame rate, a missing bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.bundle.manifest import MANIFEST_NAME
from edge_ad.capture.snapshot import ROI_COLOR, focus_measure, take_snapshot
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import CameraError, EdgeAdError
from tests.support.tiny_bundle import write_frames


def texture(seed: int, width: int = 96, height: int = 72) -> np.ndarray:
    """A sharp-edged random block pattern (BGR)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 4, width // 4), dtype=np.uint8)
    grey = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def config(source: Path, bundle: Path, **camera: object) -> EdgeAdConfig:
    return EdgeAdConfig.model_validate(
        {"station": "bench", "camera": {"source": str(source), **camera}, "model": {"path": str(bundle)}}
    )


def bundle_with_roi(tiny_models: Path, tmp_path: Path, roi: tuple[int, int, int, int]) -> Path:
    """A copy of the tiny bundle whose manifest crops ``roi`` from the frame."""
    version = shutil.copytree(load_bundle(tiny_models / "tiny").path, tmp_path / "roi-bundle" / "1")
    manifest = load_bundle(version).manifest
    changed = manifest.model_copy(update={"input": manifest.input.model_copy(update={"roi": roi})})
    (version / MANIFEST_NAME).write_text(changed.model_dump_json(indent=1))
    assert load_bundle(version).manifest.input.roi == roi
    return version


def test_a_sharp_image_has_a_higher_focus_measure_than_the_same_image_blurred():
    sharp = texture(1)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    slightly = cv2.GaussianBlur(sharp, (0, 0), 0.7)
    assert focus_measure(sharp) > focus_measure(slightly) > focus_measure(blurred)
    assert focus_measure(sharp) > 10 * focus_measure(blurred)
    assert focus_measure(np.full((32, 32, 3), 128, np.uint8)) == 0.0


def test_the_roi_is_drawn_just_outside_where_the_manifest_says(tiny_models, tmp_path):
    roi = (20, 10, 40, 30)
    frames = [texture(s) for s in range(3)]
    shot = take_snapshot(
        config(write_frames(tmp_path / "cam", frames), bundle_with_roi(tiny_models, tmp_path, roi)),
        tmp_path / "shot.png",
        frames=3,
    )
    written = cv2.imread(str(shot.path))
    last = frames[-1]
    assert written.shape == last.shape and (shot.width, shot.height) == (96, 72)
    assert shot.roi == roi and shot.focus_region == "ROI x=20 y=10 40x30"
    x, y, w, h = roi
    green = np.array(ROI_COLOR, np.uint8)
    # the one-pixel frame around the ROI is green on all four sides...
    assert (written[y - 1, x - 1 : x + w + 1] == green).all()
    assert (written[y + h, x - 1 : x + w + 1] == green).all()
    assert (written[y - 1 : y + h + 1, x - 1] == green).all()
    assert (written[y - 1 : y + h + 1, x + w] == green).all()
    # ...while what the model sees, and everything further out, is the frame as it came
    assert (written[y : y + h, x : x + w] == last[y : y + h, x : x + w]).all()
    outside = np.ones(last.shape[:2], bool)
    outside[y - 1 : y + h + 1, x - 1 : x + w + 1] = False
    assert (written[outside] == last[outside]).all()
    # focus is measured on the ROI only
    assert shot.focus == pytest.approx(focus_measure(last[y : y + h, x : x + w]))
    assert shot.focus != pytest.approx(focus_measure(last))
    assert shot.notes == ()


def test_a_roi_reaching_outside_the_frame_is_clipped_and_said(tiny_models, tmp_path):
    shot = take_snapshot(
        config(write_frames(tmp_path / "cam", [texture(1)]), bundle_with_roi(tiny_models, tmp_path, (80, 60, 40, 40))),
        tmp_path / "shot.png",
        frames=1,
    )
    assert shot.roi == (80, 60, 16, 12)
    assert any("reaches outside the 96x72 frame" in note for note in shot.notes), shot.notes


def test_frame_rate_and_frame_count_come_from_the_frames_read(tiny_models, tmp_path):
    folder = write_frames(tmp_path / "cam", [texture(s) for s in range(6)])
    paced = config(folder, tiny_models / "tiny", fps=20)  # the folder source replays at 20 frames/s
    shot = take_snapshot(paced, tmp_path / "shot.png", frames=5)
    assert shot.frames == 5 and shot.notes == (
        f"no ROI: bundle {load_bundle(tiny_models / 'tiny').path} uses the whole frame",
    )
    assert shot.elapsed_s == pytest.approx(4 / 20, rel=0.3)
    assert shot.fps == pytest.approx(20, rel=0.3)
    # a source that ends before --frames: what came is measured, and said
    shot = take_snapshot(paced, tmp_path / "shot.png", frames=10)
    assert shot.frames == 6
    assert shot.fps == pytest.approx(20, rel=0.3)
    assert any(note.startswith("only 6 of 10 frames") for note in shot.notes), shot.notes
    # the last frame read is the one written
    assert (cv2.imread(str(shot.path)) == texture(5)).all()


def test_a_missing_bundle_still_writes_the_snapshot_and_says_why_there_is_no_roi(tmp_path):
    frame = texture(7)
    missing = tmp_path / "models" / "nope"
    shot = take_snapshot(config(write_frames(tmp_path / "cam", [frame]), missing), tmp_path / "out.png", frames=1)
    assert (cv2.imread(str(tmp_path / "out.png")) == frame).all()
    assert shot.roi is None and shot.focus_region == "whole frame"
    assert shot.focus == pytest.approx(focus_measure(frame))
    assert shot.fps is None and shot.frames == 1
    (note,) = [n for n in shot.notes if n.startswith("no ROI: ")]
    assert str(missing) in note


def test_a_source_that_cannot_open_or_an_unwritable_out_are_one_line_errors(tmp_path):
    folder = write_frames(tmp_path / "cam", [texture(1)])
    with pytest.raises(CameraError, match="does not exist"):
        take_snapshot(config(tmp_path / "no-such-folder", tmp_path), tmp_path / "out.png")
    with pytest.raises(EdgeAdError, match=r"folder .* does not exist"):
        take_snapshot(config(folder, tmp_path), tmp_path / "missing-dir" / "out.png")
    with pytest.raises(EdgeAdError, match="not an image file name"):
        take_snapshot(config(folder, tmp_path), tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()
