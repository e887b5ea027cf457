"""PatchCore scoring head as OpenVINO ops: nearest-neighbour search against the memory bank.

Appended to a feature-extractor IR (output ``[1, D, h, w]``), it yields:

* ``pred_score`` ``[1]``: PatchCore's re-weighted image score (raw, not normalised), computed as
  in anomalib's ``PatchcoreModel.compute_anomaly_score``;
* ``anomaly_map`` ``[1, h, w]``: distance of every patch to its nearest bank row;
* ``embedding`` ``[1, D]``: the feature vector of the most anomalous patch, what the defect looks
  like to the backbone (similar-case search, :mod:`edge_ad.cases`).

With ``coarse_rows`` the search has two stages (the fast path, BENCHMARKS.md): every patch is
compared with a k-center subset of the bank — one MatMul against ``[-2b, |b|²]`` and a ReduceMin,
an upper bound of its true distance — and only the ``exact_patches`` patches that look worst are
compared with the whole bank. The image score is exact whenever the worst patch is among them;
the anomaly map holds the exact distance for those patches and the upper bound elsewhere.

Built without torch so the device can write a new scoring model after a memory-bank refit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset15 as ops

from edge_ad.bundle.store import Bundle, file_entry

__all__ = [
    "EMBEDDING_OUTPUT",
    "MAP_OUTPUT",
    "SCORE_OUTPUT",
    "compose_patchcore",
    "features_ir",
    "output_names",
    "recomposed_files",
    "save_scoring_ir",
    "search_options",
]

SCORE_OUTPUT = "pred_score"
MAP_OUTPUT = "anomaly_map"
EMBEDDING_OUTPUT = "embedding"


def output_names(model: ov.Model | ov.CompiledModel) -> set[str]:
    """Every tensor name of a model's outputs (which of the outputs above it has)."""
    return {name for out in model.outputs for name in out.get_names()}


def _i64(values: list[int]) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def _sq_dist(x: ov.Node, bank: ov.Node, bank_sq: ov.Node) -> ov.Node:
    """Squared euclidean distance between rows of x [n, D] and the bank [M, D], clamped at 0."""
    x_sq = ops.reduce_sum(ops.multiply(x, x), _i64([1]), keep_dims=True)
    cross = ops.matmul(x, bank, transpose_a=False, transpose_b=True)
    d2 = ops.add(ops.subtract(x_sq, ops.multiply(cross, np.float32(2.0))), bank_sq)
    return ops.maximum(d2, np.float32(0.0))


def _min_sq_dist(x: ov.Node, bank_np: np.ndarray) -> ov.Node:
    """Squared distance to the nearest bank row, per row of x [n, D]: one MatMul + ReduceMin.

    ``|x - b|² = |x|² + (|b|² - 2 x·b)``: the bracket is one MatMul of ``[x, 1]`` with
    ``[-2b, |b|²]``, so the ``[n, M]`` matrix is reduced as it comes, without elementwise passes.
    """
    n = int(x.get_output_partial_shape(0)[0].get_length())
    augmented = np.concatenate([-2 * bank_np, (bank_np**2).sum(axis=1, keepdims=True)], axis=1).astype(np.float32)
    x1 = ops.concat([x, ops.constant(np.ones((n, 1), np.float32))], 1)
    partial = ops.reduce_min(ops.matmul(x1, ops.constant(augmented), False, True), _i64([1]), keep_dims=False)
    x_sq = ops.reduce_sum(ops.multiply(x, x), _i64([1]), keep_dims=False)
    return ops.maximum(ops.add(partial, x_sq), np.float32(0.0))


def coarse_subset(memory_bank: np.ndarray, rows: int) -> np.ndarray:
    """The k-center subset of the bank used by the coarse stage (deterministic)."""
    from edge_ad.calibrate.coreset import kcenter_greedy

    return memory_bank[kcenter_greedy(memory_bank, rows, seed=0)]


def search_options(params: dict, bank_rows: int) -> dict:
    """Keyword arguments of :func:`compose_patchcore` from a manifest's model params (num_neighbors, fast path)."""
    options: dict = {"num_neighbors": int(params.get("num_neighbors", 9))}
    fraction = params.get("coarse_fraction")
    if fraction:
        options["coarse_rows"] = max(1, round(float(fraction) * bank_rows))
        options["exact_patches"] = int(params.get("exact_patches", 64))
    return options


def compose_patchcore(
    features: ov.Model,
    memory_bank: np.ndarray,
    num_neighbors: int = 9,
    coarse_rows: int | None = None,
    exact_patches: int = 64,
) -> ov.Model:
    """Append the nearest-neighbour scoring head to a feature extractor.

    Args:
        features: Model with one input and one output of shape ``[1, D, h, w]``.
        memory_bank: ``[M, D]`` float32 coreset of training patch embeddings.
        num_neighbors: Support-set size for the score re-weighting (1 disables it).
        coarse_rows: Two-stage search with a coarse subset of this many bank rows; None (or not
            fewer rows than the bank) searches the whole bank for every patch.
        exact_patches: Two-stage search: patches compared with the whole bank.

    Returns:
        A new model with outputs ``pred_score``, ``anomaly_map`` and ``embedding``.
    """
    bank_np = np.ascontiguousarray(memory_bank, dtype=np.float32)
    rows, dim = bank_np.shape
    out = features.get_results()[0].input_value(0)  # the node feeding the Result, not the Result
    _, channels, h, w = (int(d) for d in out.get_partial_shape().to_shape())
    if channels != dim:
        raise ValueError(f"feature dim {channels} does not match memory bank width {dim}")

    bank = ops.constant(bank_np)
    bank_sq = ops.constant((bank_np**2).sum(axis=1, dtype=np.float32)[None, :])
    emb = ops.reshape(ops.transpose(out, _i64([0, 2, 3, 1])), _i64([h * w, dim]), special_zero=False)

    if coarse_rows is not None and coarse_rows < rows and exact_patches < h * w:
        upper = ops.sqrt(_min_sq_dist(emb, coarse_subset(bank_np, coarse_rows)))  # [n] >= true distance
        candidates = ops.topk(upper, np.int64(exact_patches), axis=0, mode="max", sort="none").output(1)
        searched = ops.gather(emb, candidates, np.int64(0))  # [k, D]
    else:
        candidates, searched = None, emb
    count = exact_patches if candidates is not None else h * w
    nearest = ops.topk(_sq_dist(searched, bank, bank_sq), np.int64(1), axis=1, mode="min", sort="value")
    patch_scores = ops.sqrt(ops.reshape(nearest.output(0), _i64([count]), special_zero=False))
    patch_nn = ops.reshape(nearest.output(1), _i64([count]), special_zero=False)
    full = patch_scores if candidates is None else ops.scatter_update(upper, candidates, patch_scores, _i64([0]))
    anomaly_map = ops.reshape(full, _i64([1, h, w]), special_zero=False)

    worst = ops.topk(patch_scores, np.int64(1), axis=0, mode="max", sort="value")
    score = worst.output(0)  # [1]
    worst_idx = worst.output(1)
    worst_feat = ops.gather(searched, worst_idx, np.int64(0))  # [1, D]
    if num_neighbors > 1:
        k = min(num_neighbors, rows)
        nn_sample = ops.gather(bank, ops.gather(patch_nn, worst_idx, np.int64(0)), np.int64(0))  # [1, D]
        support = ops.topk(_sq_dist(nn_sample, bank, bank_sq), np.int64(k), axis=1, mode="min", sort="value")
        support_feats = ops.gather(bank, ops.reshape(support.output(1), _i64([k]), False), np.int64(0))
        diff = ops.subtract(support_feats, worst_feat)  # [k, D]
        dist = ops.sqrt(ops.reduce_sum(ops.multiply(diff, diff), _i64([1]), keep_dims=False))  # [k]
        weight = ops.subtract(np.float32(1.0), ops.gather(ops.softmax(dist, 0), _i64([0]), np.int64(0)))
        score = ops.multiply(weight, score)

    score_node = ops.result(score)
    score_node.output(0).get_tensor().set_names({SCORE_OUTPUT})
    map_node = ops.result(anomaly_map)
    map_node.output(0).get_tensor().set_names({MAP_OUTPUT})
    embedding_node = ops.result(worst_feat)
    embedding_node.output(0).get_tensor().set_names({EMBEDDING_OUTPUT})
    return ov.Model([score_node, map_node, embedding_node], features.get_parameters(), "patchcore")


def features_ir(variant: str) -> str:
    """The feature-extractor IR a PatchCore variant's scoring IR is composed from."""
    return "features.xml" if variant == "fp32" else "features_int8.xml"


def save_scoring_ir(features_xml: Path, bank: np.ndarray, params: dict, out_xml: Path) -> None:
    """Write the scoring IR a memory-bank refit installs: ``features_xml`` with the head for ``bank``.

    One recipe for the refit and for checking a refitted version against its parent (byte for byte).
    """
    extractor = ov.Core().read_model(features_xml)
    model = compose_patchcore(extractor, bank, **search_options(params, bank.shape[0]))
    for i, op in enumerate(model.get_ordered_ops()):  # OpenVINO numbers new nodes globally: name them by position
        if op.get_type_name() != "Parameter":
            op.set_friendly_name(f"{op.get_type_name()}_{i}")
    ov.save_model(model, out_xml, compress_to_fp16=False)


def recomposed_files(bundle: Bundle, parent: Bundle, names: set[str]) -> set[str]:
    """Which of ``names`` are scoring-IR files rebuilt byte for byte from the parent's feature IR and ``bundle``'s bank.

    Each variant's scoring IR is rebuilt once, and only when one of its files is among ``names``.
    """
    m = bundle.manifest
    if m.model.type != "patchcore" or "memory_bank.npy" not in m.files:
        return set()
    matching: set[str] = set()
    for variant_name, variant in m.variants.items():
        features = features_ir(variant_name)
        if not names & {variant.xml, variant.bin} or features not in parent.manifest.files:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "scoring.xml"
            save_scoring_ir(parent.path / features, np.load(bundle.path / "memory_bank.npy"), m.model.params, out)
            rebuilt = {variant.xml: file_entry(out), variant.bin: file_entry(out.with_suffix(".bin"))}
        matching |= {name for name, entry in rebuilt.items() if name in names and entry == m.files.get(name)}
    return matching
