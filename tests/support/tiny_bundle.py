"""A small real OpenVINO PatchCore bundle built from opset ops: no torch, no download.

The "backbone" is one fixed random convolution; the memory bank holds the patch embeddings of
noisy grey "good" images, so a bright square (a "defect") scores far above them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import openvino.opset15 as ops
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_ad.bundle import (
    ACCEPTANCE_FILE,
    AcceptanceSet,
    GoldenImage,
    InputSpec,
    Manifest,
    ModelSpec,
    Threshold,
    Variant,
    file_entry,
    install_bundle,
)
from edge_ad.bundle.signing import sign_manifest
from edge_ad.inference.patchcore_graph import EMBEDDING_OUTPUT, MAP_OUTPUT, SCORE_OUTPUT, compose_patchcore
from edge_ad.inference.precision import compile_pinned
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, embed_preprocessing, to_batch

__all__ = ["SIZE", "defect_image", "good_image", "make_tiny_bundle", "tiny_features", "write_frames"]

SIZE = 32


def good_image(seed: int, size: int = SIZE) -> np.ndarray:
    """Grey part with mild noise (BGR uint8)."""
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)


def defect_image(seed: int, size: int = SIZE) -> np.ndarray:
    """A good image with a bright square."""
    image = good_image(seed, size)
    rng = np.random.default_rng(seed + 1000)
    y, x = rng.integers(0, size - 10, 2)
    cv2.rectangle(image, (int(x), int(y)), (int(x) + 8, int(y) + 8), (255, 255, 255), -1)
    return image


COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 0), (255, 0, 0),
           (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]  # fmt: skip


def coloured_defect(i: int) -> np.ndarray:
    """An NG part whose defect colour differs per ``i``: the tiny model embeds a uniform square by its colour, so
    these are distinct cases for similar-case search (white squares would all be the same case)."""
    image = good_image(i)
    cv2.rectangle(image, (8, 8), (20, 20), COLOURS[i % len(COLOURS)], -1)
    return image


def write_frames(folder: Path, images: list[np.ndarray]) -> Path:
    """A camera folder: the images as ``0000.png``, ``0001.png``... (replayed in this order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder


def tiny_features(size: int = SIZE) -> ov.Model:
    """uint8 BGR NHWC -> [1, 8, size/4, size/4] embeddings."""
    rng = np.random.default_rng(0)
    param = ops.parameter([1, 3, size, size], np.float32, name="image")
    conv = ops.convolution(param, rng.normal(0, 0.3, (8, 3, 4, 4)).astype(np.float32), [4, 4], [0, 0], [0, 0], [1, 1])
    return embed_preprocessing(ov.Model([conv], [param], "tiny"), IMAGENET_MEAN, IMAGENET_STD)


def make_tiny_bundle(
    models_root: Path,
    name: str = "tiny",
    threshold: float | None = None,
    embedding: bool = True,
    acceptance: bool = True,
    budget: float = 0.003,
    int8_alias: bool = False,
    sign: Ed25519PrivateKey | None = None,
) -> Path:
    """Install a tiny FP32 bundle under ``models_root/name`` and return the version directory.

    ``embedding=False`` leaves out the case-search embedding output (like EfficientAD/STFPM bundles);
    ``acceptance=False`` makes a bundle like those exported before commissioning existed;
    ``int8_alias=True`` lists the FP32 IR a second time as an "int8" variant (a candidate on every CPU);
    ``sign`` signs the manifest with that key, as ``edge-ad export --sign-key`` does.
    """
    features = tiny_features()
    compiled = compile_pinned(ov.Core(), features, "CPU", "f32")
    embeddings = [compiled(to_batch(good_image(s), SIZE, SIZE))[0] for s in range(4)]
    bank = np.concatenate([e[0].reshape(8, -1).T for e in embeddings]).astype(np.float32)
    model = compose_patchcore(features, bank, num_neighbors=3)
    if not embedding:
        model = ov.Model([r for r in model.get_results() if EMBEDDING_OUTPUT not in r.output(0).get_names()],
                         model.get_parameters(), "no-embedding")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        ov.save_model(features, staging / "features.xml", compress_to_fp16=False)
        np.save(staging / "memory_bank.npy", bank)
        scorer = compile_pinned(ov.Core(), model, "CPU", "f32")
        (staging / "golden").mkdir()
        golden = []
        for label, image in ((0, good_image(500)), (1, defect_image(500))):
            golden_file = f"golden/{label}.png"
            cv2.imwrite(str(staging / golden_file), image)
            score = float(scorer(to_batch(image, SIZE, SIZE))[SCORE_OUTPUT][0])
            golden.append(GoldenImage(file=golden_file, label=label, scores={"fp32": score}))
        if threshold is None:
            good = max(float(scorer(to_batch(good_image(s), SIZE, SIZE))[SCORE_OUTPUT][0]) for s in range(10, 20))
            bad = min(float(scorer(to_batch(defect_image(s), SIZE, SIZE))[SCORE_OUTPUT][0]) for s in range(10, 20))
            assert bad > good, "tiny model cannot separate its own defects"
            threshold = (good + bad) / 2
        spec = None
        if acceptance:  # 8 good and 8 defect images at model resolution, with their FP32 scores
            batches = np.stack(
                [to_batch(f(s), SIZE, SIZE)[0] for f in (good_image, defect_image) for s in range(30, 38)]
            )
            scores = np.array([float(scorer(b[None])[SCORE_OUTPUT][0]) for b in batches])
            labels = np.repeat([0, 1], 8)
            accepted = AcceptanceSet(batches, labels, np.where(labels == 1, "square", "good"), scores)
            accepted.write(staging / ACCEPTANCE_FILE)
            spec = accepted.spec(budget, "tiny")
        manifest = Manifest(
            name=name,
            version="0",
            created="2026-01-01T00:00:00+00:00",
            model=ModelSpec(
                type="patchcore" if embedding else "stfpm", backbone="tiny-conv", layers=["conv"], weights="random"
            ),
            input=InputSpec(
                height=SIZE,
                width=SIZE,
                normalization={"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            ),
            outputs={"score": SCORE_OUTPUT, "map": MAP_OUTPUT},
            variants={
                name: Variant(
                    xml="model.xml",
                    bin="model.bin",
                    precision=name.upper(),
                    threshold=Threshold(value=threshold, method="manual"),
                )
                for name in ("fp32", "int8")[: 2 if int8_alias else 1]
            },
            default_variant="fp32",
            files={p.relative_to(staging).as_posix(): file_entry(p) for p in sorted(staging.rglob("*")) if p.is_file()},
            golden=golden,
            acceptance=spec,
        )
        signer = None if sign is None else (lambda folder: sign_manifest(folder, sign, "export"))
        return install_bundle(staging, models_root, manifest, sign=signer)
