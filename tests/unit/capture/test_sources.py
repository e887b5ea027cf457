from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ad.capture import FolderSource, open_source
from edge_ad.capture.sources import Pacer
from edge_ad.config import CameraConfig
from edge_ad.errors import CameraError


def write_folder(folder: Path, n: int) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(n)]
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    (folder / "notes.txt").write_text("ignored")
    return images


def test_folder_replays_in_name_order_then_ends(tmp_path):
    images = write_folder(tmp_path / "f", 3)
    source = open_source(CameraConfig(source=str(tmp_path / "f")))
    frames = [source.read() for _ in range(3)]
    assert [f.origin for f in frames] == ["000.png", "001.png", "002.png"]
    assert [f.index for f in frames] == [1, 2, 3]
    assert all(np.array_equal(f.image, img) for f, img in zip(frames, images, strict=True))
    assert source.read() is None


def test_folder_loop(tmp_path):
    write_folder(tmp_path / "f", 2)
    source = FolderSource(tmp_path / "f", loop=True)
    assert [source.read().origin for _ in range(5)] == ["000.png", "001.png", "000.png", "001.png", "000.png"]


def write_clip(path: Path, frames: int = 4) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    return path


def test_video_file_is_read_and_loops(tmp_path):
    path = write_clip(tmp_path / "clip.avi")
    once = open_source(CameraConfig(source=str(path)))
    frames = [once.read() for _ in range(4)]
    assert all(f is not None and f.image.shape == (24, 32, 3) for f in frames)
    assert once.read() is None
    looped = open_source(CameraConfig(source=str(path), loop=True))
    assert all(looped.read() is not None for _ in range(9))


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_looping_video_file_notices_its_file_is_gone(tmp_path, monkeypatch, change):
    """The open handle would keep a deleted file readable forever; the source must notice."""
    monkeypatch.setattr("edge_ad.capture.sources.FILE_CHECK_S", 0.0)
    path = write_clip(tmp_path / "clip.avi")
    source = open_source(CameraConfig(source=str(path), loop=True))
    assert source.read() is not None
    path.unlink()
    if change == "replaced":
        write_clip(tmp_path / "new.avi").rename(path)
    with pytest.raises(CameraError, match=r"video file .*clip.avi was removed or replaced"):
        source.read()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{tmp}/missing_dir/", "video file .*missing_dir/ does not exist"),
        ("{tmp}/clip.mp4", "video file .*clip.mp4 does not exist"),
        ("/dev/video99", "cannot open device '/dev/video99'; check that it is plugged in"),
        (99, "cannot open device 99"),
        ("rtsp://127.0.0.1:1/none", "cannot open stream 'rtsp://127.0.0.1:1/none'"),
    ],
)
def test_unopenable_sources_name_the_device(tmp_path, source, expected):
    if isinstance(source, str):
        source = source.format(tmp=tmp_path)
    with pytest.raises(CameraError, match=expected):
        open_source(CameraConfig(source=source, open_timeout_s=2))


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="has no images"):
        open_source(CameraConfig(source=str(tmp_path / "empty")))


@pytest.mark.parametrize("loop", [False, True])
def test_bad_files_are_skipped_and_counted_and_replay_moves_on(tmp_path, loop):
    # before: a non-looping folder replayed the images before the bad one forever; a looping one never
    # reached the images after it
    write_folder(tmp_path / "f", 4)  # 000..003.png
    (tmp_path / "f" / "001.png").write_bytes(b"not a png")
    (tmp_path / "f" / "002.png").write_bytes(b"")
    source = open_source(CameraConfig(source=str(tmp_path / "f"), loop=loop))
    names = (
        [frame.origin for frame in iter(source.read, None)] if not loop else [source.read().origin for _ in range(4)]
    )
    assert names == (["000.png", "003.png"] if not loop else ["000.png", "003.png", "000.png", "003.png"])
    assert source.bad_frames == (2 if not loop else 4)


def test_a_folder_of_only_bad_files_is_a_camera_error_not_a_spin(tmp_path):
    write_folder(tmp_path / "f", 2)
    for name in ("000.png", "001.png"):
        (tmp_path / "f" / name).write_bytes(b"")
    source = open_source(CameraConfig(source=str(tmp_path / "f"), loop=True))
    with pytest.raises(CameraError, match=r"no image in .* is readable"):
        source.read()


def test_pacer_caps_the_rate():
    pacer = Pacer(50.0)
    start = time.monotonic()
    for _ in range(6):
        pacer.wait()
    assert time.monotonic() - start >= 5 / 50 * 0.9
