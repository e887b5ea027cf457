from __future__ import annotations

import hashlib

import cv2
import pytest

from edge_ad.datasets.layout import find_category, list_images
from edge_ad.datasets.synthetic import DEFECTS, DatasetSpec, make_dataset
from edge_ad.errors import DatasetError

pytestmark = pytest.mark.export  # needs scikit-image (export extra)

SPEC = DatasetSpec(size=64, train=3, test_good=2, test_defect=2, seed=5)


def digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))
    }


def test_mvtec_layout_with_masks(tmp_path):
    roots = make_dataset(tmp_path, ["brick", "gravel"], SPEC)
    assert [r.name for r in roots] == ["brick", "gravel"]
    for root in roots:
        category = find_category(root)
        assert len(list_images(category.train_good)) == 3 and len(list_images(category.test_good)) == 2
        assert category.defect_kinds == sorted(DEFECTS) and len(DEFECTS) >= 2
        for kind in category.defect_kinds:
            for image in list_images(root / "test" / kind):
                mask = cv2.imread(str(root / "ground_truth" / kind / f"{image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
                assert mask.shape == (64, 64) and mask.max() == 255 and (mask > 0).mean() < 0.2


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = digest(make_dataset(tmp_path / "a", ["brick"], SPEC)[0])
    b = digest(make_dataset(tmp_path / "b", ["brick"], SPEC)[0])
    c = digest(make_dataset(tmp_path / "c", ["brick"], DatasetSpec(**{**SPEC.__dict__, "seed": 6}))[0])
    assert a == b
    assert a != c


def test_a_category_does_not_depend_on_the_others_asked_for(tmp_path):
    alone = digest(make_dataset(tmp_path / "a", ["grass"], SPEC)[0])
    among = digest(make_dataset(tmp_path / "b", ["brick", "gravel", "grass"], SPEC)[2])
    assert alone == among


def test_not_a_category_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="train/good: missing or has no images"):
        find_category(tmp_path)
