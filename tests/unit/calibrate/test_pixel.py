from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.pixel import aupro, pixel_auroc, pro_curve, regions


def square(size: int, y: int, x: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y : y + side, x : x + side] = True
    return mask


def two_defects_and_a_good_image() -> list[np.ndarray]:
    big = square(16, 2, 2, 6)  # 36 pixels
    big[12:14, 12:14] = True  # plus a separate 4-pixel region in the same image
    return [big, square(16, 8, 3, 3), np.zeros((16, 16), bool)]


def brute_force_aupro(maps, masks, limit=0.3) -> float:
    """The definition, threshold by threshold: mean region overlap against the good-pixel FPR."""
    good = np.concatenate([m[~g] for m, g in zip(maps, masks, strict=True)])
    found = [(m, regions(g)) for m, g in zip(maps, masks, strict=True)]
    points = [(0.0, 0.0)]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        overlaps = [np.mean(m[lab == r] >= t) for m, lab in found for r in range(1, lab.max() + 1)]
        points.append((float(np.mean(good >= t)), float(np.mean(overlaps))))
    fpr, pro = np.array(points).T
    inside = fpr <= limit
    area = np.sum(np.diff(fpr[inside]) * (pro[inside][1:] + pro[inside][:-1]) / 2)
    i = np.flatnonzero(inside)[-1]
    if fpr[i] < limit:  # the straight line to the next point, cut at the limit
        cut = pro[i] + (pro[i + 1] - pro[i]) * (limit - fpr[i]) / (fpr[i + 1] - fpr[i])
        area += (limit - fpr[i]) * (pro[i] + cut) / 2
    return float(area / limit)


def test_a_perfect_map_scores_one_and_an_inverted_one_zero():
    masks = two_defects_and_a_good_image()
    perfect = [g.astype(float) for g in masks]
    inverted = [1.0 - g for g in perfect]
    assert pixel_auroc(perfect, masks) == 1.0 and aupro(perfect, masks) == pytest.approx(1.0)
    assert pixel_auroc(inverted, masks) == 0.0 and aupro(inverted, masks) == pytest.approx(0.0)


def test_pro_averages_regions_not_pixels():
    masks = two_defects_and_a_good_image()
    # the big square is found (score 1), the two small regions are not (score 0 like the background)
    maps = [np.where(square(16, 2, 2, 6), 1.0, 0.0), np.zeros((16, 16)), np.zeros((16, 16))]
    fpr, pro = pro_curve(maps, masks)
    assert (fpr[1], pro[1]) == (0.0, pytest.approx(1 / 3))  # 1 of 3 regions, though 36 of 49 defect pixels
    assert fpr[-1] == 0.3
    assert aupro(maps, masks) == pytest.approx(1 / 3 + (1 - 1 / 3) * 0.3 / 2)  # then a straight line to (1, 1)


def test_regions_are_8_connected():
    mask = np.zeros((5, 5), bool)
    mask[1, 1] = mask[2, 2] = True  # diagonal neighbours: one region
    mask[4, 4] = True
    assert regions(mask).max() == 2


def test_aupro_matches_the_brute_force_definition_on_a_small_noisy_case():
    rng = np.random.default_rng(0)
    masks = two_defects_and_a_good_image()
    maps = [np.round(g * 0.6 + rng.normal(0, 0.4, g.shape), 1) for g in masks]  # rounded: many tied scores
    assert aupro(maps, masks) == pytest.approx(brute_force_aupro(maps, masks), abs=1e-12)
    assert aupro(maps, masks, 1.0) == pytest.approx(brute_force_aupro(maps, masks, 1.0), abs=1e-12)


def test_pixel_auroc_is_the_image_auroc_of_the_pixels():
    rng = np.random.default_rng(1)
    masks = two_defects_and_a_good_image()
    maps = [g * 0.5 + rng.random(g.shape) for g in masks]
    defect = np.concatenate([m[g] for m, g in zip(maps, masks, strict=True)])
    good = np.concatenate([m[~g] for m, g in zip(maps, masks, strict=True)])
    pairs = (defect[:, None] > good[None, :]).mean()
    assert pixel_auroc(maps, masks) == pytest.approx(pairs)


@pytest.mark.parametrize(
    ("maps", "masks", "message"),
    [
        ([np.zeros((4, 4))], [np.zeros((4, 5), bool)], "differ"),  # not resized to each other
        ([np.zeros((4, 4))], [np.zeros((4, 4), bool)], "defect pixels"),  # only good images
        ([np.zeros((4, 4))], [], "one mask per map"),
    ],
)
def test_unusable_inputs_are_refused(maps, masks, message):
    with pytest.raises(ValueError, match=message):
        aupro(maps, masks)


@pytest.mark.export
def test_aupro_agrees_with_anomalib():
    torch = pytest.importorskip("torch")
    aupro_module = pytest.importorskip("anomalib.metrics.aupro")
    rng = np.random.default_rng(2)
    masks = [square(32, 4, 4, 9), square(32, 20, 10, 5) | square(32, 2, 25, 3), np.zeros((32, 32), bool)]
    maps = [(g * 0.8 + rng.normal(0, 0.5, g.shape)).astype(np.float32) for g in masks]
    metric = aupro_module._AUPRO(fpr_limit=0.3)
    metric.update(torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks).astype(np.float32)))
    assert aupro(maps, masks) == pytest.approx(float(metric.compute()), abs=1e-5)
