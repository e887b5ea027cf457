"""Fast k-center-greedy coreset selection in numpy (export and on-device memory-bank refits).

anomalib's ``KCenterGreedy`` adds one centre per iteration and recomputes every point's distance
in torch, which on a 2-core CPU takes minutes for 10 % of 120 images. This module projects patch
features to ``projection_dim`` dimensions with a Gaussian random projection (distances preserved
up to a small factor, as in anomalib's sparse projection) and then, by default, runs **the exact
greedy algorithm** in rounds:

* the pool of the currently farthest points gets exact greedy steps among themselves, as long as
  the next pick is at least as far as every point outside the pool (whose stored distances are
  upper bounds, since distances only shrink): each pick is the one the one-at-a-time algorithm
  would make, up to float ties;
* then one matrix product updates every point's distance to the round's new centres.

``exact=False`` is the older batched approximation (a fixed number of picks per round from the
pool, even past that bound): faster still, and measurably worse on some data (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["kcenter_greedy"]


def kcenter_greedy(
    features: np.ndarray,
    n: int,
    seed: int = 0,
    projection_dim: int = 64,
    rounds: int = 256,
    progress=None,
    exact: bool = True,
    start: int | None = None,
) -> np.ndarray:
    """Indices of ``n`` rows of ``features`` that cover the set (k-center greedy).

    Args:
        features: ``[N, D]`` patch embeddings.
        n: Number of rows to select.
        seed: Seed of the projection and of the first centre.
        projection_dim: Width of the random projection (no projection when >= D).
        rounds: Target number of selection rounds; the pool (exact) or the batch (approximate) is sized
            from ``ceil(n / rounds)``.
        progress: Called with the number of centres added after each round.
        exact: The greedy algorithm's own picks (default), or the batched approximation.
        start: The first centre (default: drawn from ``seed``, as anomalib draws it).

    Returns:
        Sorted selected row indices (int64), without duplicates.
    """
    x = np.asarray(features, dtype=np.float32)
    total = x.shape[0]
    if n >= total:
        return np.arange(total)
    if n <= 0:
        raise ValueError(f"coreset size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    if projection_dim < x.shape[1]:
        proj = rng.standard_normal((x.shape[1], projection_dim), dtype=np.float32) / np.sqrt(projection_dim)
        x = x @ proj
    sq = np.einsum("ij,ij->i", x, x)
    xt = np.ascontiguousarray(x.T)
    batch = max(1, -(-n // rounds))
    first = int(rng.integers(total)) if start is None else int(start)
    min_dist = np.maximum(sq - 2 * x @ x[first] + sq[first], 0)
    min_dist[first] = -1.0
    selected = [first]
    pick = _exact_picks if exact else _greedy_among_farthest
    while len(selected) < n:
        b = min(batch, n - len(selected))
        idx = pick(x, sq, min_dist, b)
        selected.extend(idx.tolist())
        # (b, N) layout: the reduction over new centres runs along contiguous rows
        dist = (-2.0 * x[idx]) @ xt
        dist += sq[idx][:, None]
        np.minimum(min_dist, dist.min(axis=0) + sq, out=min_dist)
        min_dist[idx] = -1.0
        if progress is not None:
            progress(b)
    return np.sort(np.asarray(selected, dtype=np.int64))


def _exact_picks(x: np.ndarray, sq: np.ndarray, min_dist: np.ndarray, b: int) -> np.ndarray:
    """The greedy algorithm's next picks (at least one, at most ``b``) from a pool of the farthest points.

    A pick is made only while it is at least as far as every point outside the pool, whose stored
    distance is an upper bound of its current one: so it is exactly the one-at-a-time algorithm's.
    """
    pool = min(len(min_dist), 32 * b)
    if pool < len(min_dist):
        order = np.argpartition(min_dist, -(pool + 1))
        cand, bound = order[-pool:], float(min_dist[order[-(pool + 1)]])
    else:
        cand, bound = np.arange(len(min_dist)), -np.inf
    cand_dist = min_dist[cand].copy()
    zc = x[cand]
    chosen: list[int] = []
    while len(chosen) < b:
        j = int(np.argmax(cand_dist))
        if chosen and cand_dist[j] < bound:
            break  # a point outside the pool may now be farther: update everything first
        chosen.append(int(cand[j]))
        diff = zc - zc[j]
        np.minimum(cand_dist, np.einsum("ij,ij->i", diff, diff), out=cand_dist)
        cand_dist[j] = -1.0
    return np.array(chosen)


def _greedy_among_farthest(x: np.ndarray, sq: np.ndarray, min_dist: np.ndarray, b: int) -> np.ndarray:
    """``b`` greedy k-center steps over the ``16 * b`` points farthest from the current centres."""
    if b == 1:
        return np.array([int(np.argmax(min_dist))])
    pool = min(len(min_dist), 16 * b)
    cand = np.argpartition(min_dist, -pool)[-pool:]
    cand_dist = min_dist[cand].copy()
    zc, sqc = x[cand], sq[cand]
    chosen = []
    for _ in range(b):
        j = int(np.argmax(cand_dist))
        chosen.append(cand[j])
        np.minimum(cand_dist, sqc - 2 * (zc @ zc[j]) + sqc[j], out=cand_dist)
        cand_dist[j] = -1.0
    return np.array(chosen)
