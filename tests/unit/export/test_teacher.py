"""EfficientAD teacher files and the local penalty set (no downloads, no training)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_ad.errors import DatasetError, ExportError  # noqa: E402
from edge_ad.export.teacher import (  # noqa: E402
    TEACHER_FORMAT,
    cached_teacher,
    load_teacher,
    packaged_images,
    penalty_images,
)

pytestmark = pytest.mark.export


def _teacher_file(path, size="small", fmt=TEACHER_FORMAT):
    torch.save({"format": fmt, "model_size": size, "out_channels": 152, "state_dict": {"w": torch.zeros(1)}}, path)
    return path


def test_default_penalty_set_ships_with_scikit_image_and_leaves_out_our_textures():
    photos = penalty_images()
    assert len(photos) >= 10 and set(photos) < set(packaged_images())
    assert not {"brick", "gravel", "grass"} & {p.stem for p in photos}


def test_penalty_folder_without_images_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"model.penalty_dir: .* has no images"):
        penalty_images(tmp_path)


def test_load_teacher_checks_file_and_size(tmp_path):
    state, channels = load_teacher(_teacher_file(tmp_path / "t.pth"), "small")
    assert channels == 152 and set(state) == {"w"}
    with pytest.raises(ExportError, match=r"is a 'small' PDN but model\.efficientad_size is 'medium'"):
        load_teacher(tmp_path / "t.pth", "medium")
    with pytest.raises(ExportError, match="not found; make one with 'edge-ad distill-teacher --size small"):
        load_teacher(tmp_path / "missing.pth", "small")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ExportError, match="is not a teacher file"):
        load_teacher(tmp_path / "junk.pth", "small")
    with pytest.raises(ExportError, match="not an edge_ad teacher file"):
        load_teacher(_teacher_file(tmp_path / "old.pth", fmt=0), "small")


def test_cached_teacher_is_reused_without_distilling(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_AD_CACHE", str(tmp_path))
    (tmp_path / "teachers").mkdir()
    existing = _teacher_file(tmp_path / "teachers" / "pdn_small.pth")

    def fail(*args, **kwargs):
        raise AssertionError("distilled although a cached teacher exists")

    monkeypatch.setattr("edge_ad.export.teacher.distill_teacher", fail)
    assert cached_teacher("small") == existing


@pytest.mark.parametrize("size", ["small", "medium"])
def test_distilled_teacher_loads_into_anomalib_efficientad(tmp_path, size):
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel

    from edge_ad.export.teacher import distill_teacher

    made = distill_teacher(tmp_path / f"{size}.pth", model_size=size, steps=1, image_size=64, batch_size=2)
    state, channels = load_teacher(made.path, size)
    assert channels == made.out_channels == 152  # lite0 blocks.2 (40) + blocks.4 (112)
    model = EfficientAdModel(teacher_out_channels=channels, model_size=size)
    model.teacher.load_state_dict(state)
    out = model.teacher(torch.zeros(1, 3, 128, 128))
    assert out.shape[:2] == (1, 152)
