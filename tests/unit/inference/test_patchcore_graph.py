from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset15 as ops
import pytest

from edge_ad.inference.patchcore_graph import (
    EMBEDDING_OUTPUT,
    MAP_OUTPUT,
    SCORE_OUTPUT,
    compose_patchcore,
    search_options,
)
from edge_ad.inference.precision import compile_pinned


def compiled_f32(model: ov.Model) -> ov.CompiledModel:
    """Numbers are compared here: pinned to f32 (the CPU plugin's default is bf16 on bf16 CPUs)."""
    return compile_pinned(ov.Core(), model, "CPU", "f32")


def identity_features(dim: int, h: int, w: int) -> ov.Model:
    """A 'feature extractor' that returns its input, so tests control the embeddings."""
    param = ops.parameter([1, dim, h, w], np.float32)
    return ov.Model([ops.relu(param)], [param])


def reference_score(embedding: np.ndarray, bank: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """anomalib PatchcoreModel.compute_anomaly_score, written out in numpy."""
    d = np.sqrt(((embedding[:, None, :] - bank[None]) ** 2).sum(-1))
    patch_scores, locations = d.min(1), d.argmin(1)
    worst = patch_scores.argmax()
    if k == 1:
        return float(patch_scores[worst]), patch_scores
    nn_sample = bank[locations[worst]]
    support = np.argsort(((bank - nn_sample) ** 2).sum(-1), kind="stable")[:k]
    dist = np.sqrt(((bank[support] - embedding[worst]) ** 2).sum(-1))
    weights = np.exp(dist) / np.exp(dist).sum()
    return float((1 - weights[0]) * patch_scores[worst]), patch_scores


@pytest.mark.parametrize("k", [1, 3, 9, 50])  # 50 > bank rows: clipped like anomalib
def test_head_matches_reference(k):
    rng = np.random.default_rng(k)
    dim, h, w = 6, 4, 5
    bank = rng.random((40, dim)).astype(np.float32)
    x = rng.random((1, dim, h, w)).astype(np.float32)
    compiled = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, k))
    out = compiled(x)
    embedding = x[0].transpose(1, 2, 0).reshape(-1, dim)
    score, patch_scores = reference_score(embedding, bank, min(k, len(bank)))
    assert out[SCORE_OUTPUT].shape == (1,)
    assert out[SCORE_OUTPUT][0] == pytest.approx(score, rel=1e-4)
    np.testing.assert_allclose(out[MAP_OUTPUT][0], patch_scores.reshape(h, w), rtol=1e-4, atol=1e-5)
    # the case-search embedding is the most anomalous patch's feature vector
    np.testing.assert_allclose(out[EMBEDDING_OUTPUT], embedding[[patch_scores.argmax()]], rtol=1e-6)


def test_patch_identical_to_bank_scores_zero():
    bank = np.eye(4, dtype=np.float32)
    x = np.zeros((1, 4, 1, 2), np.float32)
    x[0, :, 0, 0] = bank[1]
    x[0, :, 0, 1] = bank[2]
    out = compiled_f32(compose_patchcore(identity_features(4, 1, 2), bank, 1))(x)
    assert out[SCORE_OUTPUT][0] == pytest.approx(0.0, abs=1e-3)


def test_width_mismatch_is_refused():
    with pytest.raises(ValueError, match="feature dim 6 does not match memory bank width 5"):
        compose_patchcore(identity_features(6, 2, 2), np.zeros((3, 5), np.float32))


@pytest.mark.export
def test_head_matches_anomalib_torch_model():
    torch = pytest.importorskip("torch")
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    rng = np.random.default_rng(7)
    dim, h, w = 8, 3, 3
    bank = rng.random((30, dim)).astype(np.float32)
    x = rng.random((1, dim, h, w)).astype(np.float32)
    model = PatchcoreModel(layers=["x"], backbone="resnet18", pre_trained=False, num_neighbors=9)
    model.memory_bank = torch.from_numpy(bank)
    embedding = torch.from_numpy(x[0].transpose(1, 2, 0).reshape(-1, dim).copy())
    patch_scores, locations = model.nearest_neighbors(embedding, n_neighbors=1)
    expected = model.compute_anomaly_score(patch_scores.reshape(1, -1), locations.reshape(1, -1), embedding)
    out = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, 9))(x)
    assert out[SCORE_OUTPUT][0] == pytest.approx(float(expected[0]), rel=1e-4)


@pytest.mark.parametrize("k", [1, 9])
def test_two_stage_search_finds_the_worst_patch_exactly(k):
    rng = np.random.default_rng(7)
    dim, h, w = 8, 6, 6
    bank = rng.random((300, dim)).astype(np.float32)
    x = bank[rng.integers(0, 300, h * w)].T.reshape(1, dim, h, w) + rng.normal(0, 0.02, (1, dim, h, w))
    x[0, :, 2, 3] += 0.8  # one clearly anomalous patch
    x = x.astype(np.float32)
    exact = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, k))(x)
    fast = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, k, coarse_rows=30, exact_patches=4))(x)
    assert fast[SCORE_OUTPUT][0] == pytest.approx(exact[SCORE_OUTPUT][0], rel=1e-4)
    np.testing.assert_allclose(fast[EMBEDDING_OUTPUT], exact[EMBEDDING_OUTPUT], rtol=1e-6)
    exact_map, fast_map = exact[MAP_OUTPUT][0], fast[MAP_OUTPUT][0]
    assert fast_map[2, 3] == pytest.approx(exact_map[2, 3], rel=1e-4)  # searched exactly
    assert np.all(fast_map >= exact_map - 1e-4)  # elsewhere an upper bound (distance to a subset)
    assert np.sum(np.isclose(fast_map, exact_map, rtol=1e-4)) >= 4


def test_two_stage_never_scores_above_the_exact_search():
    rng = np.random.default_rng(3)
    dim, h, w = 6, 5, 5
    bank = rng.random((200, dim)).astype(np.float32)
    for seed in range(5):
        x = np.random.default_rng(seed).random((1, dim, h, w)).astype(np.float32)
        exact = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, 1))(x)
        fast = compiled_f32(compose_patchcore(identity_features(dim, h, w), bank, 1, coarse_rows=20, exact_patches=3))(
            x
        )
        assert fast[SCORE_OUTPUT][0] <= exact[SCORE_OUTPUT][0] * (1 + 1e-5)


def test_search_options_from_manifest_params():
    assert search_options({"num_neighbors": 3}, 6144) == {"num_neighbors": 3}  # exact search
    fast = search_options({"num_neighbors": 9, "coarse_fraction": 0.1, "exact_patches": 16}, 6144)
    assert fast == {"num_neighbors": 9, "coarse_rows": 614, "exact_patches": 16}
    assert search_options({"coarse_fraction": 0.1}, 5)["coarse_rows"] == 1  # a refit bank may be tiny
