from __future__ import annotations

import numpy as np
import pytest

from edge_ad.calibrate.coreset import kcenter_greedy


def brute_force_greedy(x: np.ndarray, n: int, first: int) -> set[int]:
    selected = [first]
    dist = ((x - x[first]) ** 2).sum(1)
    while len(selected) < n:
        nxt = int(np.argmax(dist))
        selected.append(nxt)
        dist = np.minimum(dist, ((x - x[nxt]) ** 2).sum(1))
    return set(selected)


def covering_radius(x: np.ndarray, idx: np.ndarray) -> float:
    return float(np.sqrt(((x[:, None] - x[idx][None]) ** 2).sum(-1).min(1).max()))


def test_without_projection_it_is_exact_greedy():
    x = np.random.default_rng(1).normal(size=(300, 5)).astype(np.float32)
    idx = kcenter_greedy(x, 20, seed=3, projection_dim=64)
    first = int(np.random.default_rng(3).integers(300))
    assert set(idx.tolist()) == brute_force_greedy(x, 20, first)


def test_batched_rounds_cover_almost_as_well_and_much_better_than_random():
    # a dense blob plus rare, distant clusters: the rare patches a defect detector must keep
    rng = np.random.default_rng(0)
    rare = [rng.normal(loc, 0.05, size=(10, 2)) for loc in ((8, 8), (-8, 6), (7, -9))]
    x = np.concatenate([rng.normal(0, 1, size=(2970, 2)), *rare]).astype(np.float32)
    exact = covering_radius(x, kcenter_greedy(x, 60))
    batched = covering_radius(x, kcenter_greedy(x, 60, rounds=10, exact=False))
    random = covering_radius(x, rng.choice(len(x), 60, replace=False))
    assert batched <= exact * 1.3
    assert batched < random * 0.5


def test_sizes_and_uniqueness():
    x = np.random.default_rng(0).normal(size=(500, 40)).astype(np.float32)
    idx = kcenter_greedy(x, 123)
    assert len(idx) == 123 == len(np.unique(idx)) and np.all(np.diff(idx) > 0)
    assert np.array_equal(kcenter_greedy(x, 600), np.arange(500))
    assert np.array_equal(idx, kcenter_greedy(x, 123)), "same seed, same coreset"
    with pytest.raises(ValueError, match="positive"):
        kcenter_greedy(x, 0)


def test_the_default_picks_exactly_what_anomalibs_greedy_picks():
    """Same projected features, same first centre: the same rows as anomalib's KCenterGreedy (issue 20)."""
    torch = pytest.importorskip("torch")
    sampling = pytest.importorskip("anomalib.models.components.sampling")
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(40, 24)).astype(np.float32) * 3
    x = (centres[rng.integers(40, size=4000)] + rng.normal(size=(4000, 24))).astype(np.float32)
    torch.manual_seed(11)
    start = int(torch.randint(high=len(x), size=(1,)).squeeze())
    torch.manual_seed(11)
    sampler = sampling.KCenterGreedy(torch.from_numpy(x)[:, :, None], sampling_ratio=0.1)  # 3-D: no projection
    theirs = sorted(int(i) for i in sampler.select_coreset_idxs())
    ours = kcenter_greedy(x, 400, projection_dim=64, start=start).tolist()  # 24 dims < 64: no projection
    assert ours == theirs


def test_the_approximation_stays_available_and_rounds_never_change_the_exact_picks():
    x = np.random.default_rng(1).normal(size=(20000, 16)).astype(np.float32)
    exact, approx = kcenter_greedy(x, 2000, rounds=4), kcenter_greedy(x, 2000, rounds=4, exact=False)
    assert len(approx) == 2000 and set(approx.tolist()) != set(exact.tolist())
    assert np.array_equal(exact, kcenter_greedy(x, 2000, rounds=2000)), "one pick per round: the same rows"
