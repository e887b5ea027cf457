"""`edge-ad export`: train -> OpenVINO FP32 + INT8 IR -> evaluate with the runtime -> bundle."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

import edge_ad
from edge_ad.bundle import (
    Bundle,
    InputSpec,
    Manifest,
    ModelSpec,
    Threshold,
    Variant,
    file_entry,
    install_bundle,
)
from edge_ad.calibrate.metrics import auroc, best_f1_threshold, classification_stats, spearman
from edge_ad.datasets.layout import Category, find_category, list_images
from edge_ad.errors import DatasetError
from edge_ad.export.patchcore import (
    PatchcoreParams,
    TrainedPatchcore,
    features_ir,
    memory_bank,
    train_patchcore,
)
from edge_ad.export.quantize import quantize_ptq
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.patchcore_graph import MAP_OUTPUT, SCORE_OUTPUT, compose_patchcore
from edge_ad.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ExportResult", "export_bundle"]

logger = logging.getLogger(__name__)

_FILES = {
    "fp32": ("model.xml", "model.bin", "features.xml", "features.bin"),
    "int8": ("model_int8.xml", "model_int8.bin", "features_int8.xml", "features_int8.bin"),
}


@dataclass
class ExportResult:
    """What an export produced."""

    bundle: Path
    manifest: Manifest
    trained: TrainedPatchcore
    scores: dict[str, np.ndarray]
    labels: np.ndarray
    test_paths: list[Path]


def _read(paths: list[Path]) -> list[np.ndarray]:
    images = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{p}: not a readable image; remove or replace it")
        images.append(img)
    return images


def _versions() -> dict[str, str]:
    out = {"edge_ad": edge_ad.__version__}
    for pkg in ("anomalib", "openvino", "nncf", "torch", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _save_variant(staging: Path, name: str, features: ov.Model, bank: np.ndarray, neighbors: int) -> None:
    model_xml, _, feat_xml, _ = _FILES[name]
    ov.save_model(features, staging / feat_xml, compress_to_fp16=False)
    ov.save_model(compose_patchcore(features, bank, neighbors), staging / model_xml, compress_to_fp16=False)


def _evaluate(
    bundle: Bundle, variant: str, images: list[np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, Variant]:
    model = AnomalyModel(bundle, variant=variant, device="CPU")
    scores = model.score_images(images)
    threshold, _ = best_f1_threshold(labels, scores)
    stats = classification_stats(labels, scores, threshold)
    metrics = {"image_auroc": auroc(labels, scores), **{k: float(v) for k, v in stats.items()}}
    entry = bundle.manifest.variants[variant].model_copy(  # type: ignore[index]
        update={
            "threshold": Threshold(
                value=threshold,
                method="f1",
                inputs={"split": "test", "good": int((labels == 0).sum()), "defect": int(labels.sum())},
            ),
            "metrics": metrics,
        }
    )
    return scores, entry


def export_bundle(
    data: str | Path,
    out: str | Path,
    name: str | None = None,
    params: PatchcoreParams | None = None,
    weights: Path | None = None,
    int8: bool = True,
) -> ExportResult:
    """Train PatchCore on ``data`` and install a new bundle version under ``out/<name>/``.

    Args:
        data: MVTec-style category directory.
        out: Models root (``models/``).
        name: Bundle name; default the category name.
        params: Training parameters.
        weights: Backbone ImageNet weights file; default the packaged lite0 weights.
        int8: Also write an NNCF INT8 variant (the default variant when present).
    """
    category: Category = find_category(data)
    params = params or PatchcoreParams()
    name = name or category.name
    size = params.image_size
    test = category.test_images()
    test_paths = [p for p, _, _ in test]
    labels = np.array([label for _, label, _ in test])
    if labels.min() == labels.max():
        raise DatasetError(
            f"{category.root}/test: needs both good and defect images to choose a threshold; "
            "add a few defect images under test/<defect>/"
        )
    test_images = _read(test_paths)

    with tempfile.TemporaryDirectory(prefix="edge-ad-export-") as tmp:
        tmp_path = Path(tmp)
        trained = train_patchcore(category, params, tmp_path / "anomalib", weights)
        staging = tmp_path / "bundle"
        staging.mkdir()
        bank = memory_bank(trained)
        np.save(staging / "memory_bank.npy", bank)
        features = features_ir(trained, size)
        _save_variant(staging, "fp32", features, bank, params.num_neighbors)
        variants = ["fp32"]
        if int8:
            calib = _read(list_images(category.train_good)[:300])
            logger.info("quantizing to INT8 with NNCF on %d good images", len(calib))
            _save_variant(
                staging, "int8", quantize_ptq(features, calib, size, size), bank, params.num_neighbors
            )
            variants.append("int8")

        placeholder = Threshold(value=0.0, method="manual")
        manifest = Manifest(
            name=name,
            version="0",
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            model=ModelSpec(
                type="patchcore",
                backbone=params.backbone,
                layers=list(params.layers),
                weights=Path(trained.weights).name,
                params={
                    "coreset_ratio": params.coreset_ratio,
                    "num_neighbors": params.num_neighbors,
                    "memory_bank_rows": int(bank.shape[0]),
                    "feature_dim": int(bank.shape[1]),
                    "seed": params.seed,
                },
            ),
            input=InputSpec(
                height=size,
                width=size,
                normalization={"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            ),
            outputs={"score": SCORE_OUTPUT, "map": MAP_OUTPUT},
            variants={
                v: Variant(xml=_FILES[v][0], bin=_FILES[v][1], precision=v.upper(), threshold=placeholder)
                for v in variants
            },
            default_variant=variants[-1],
            files={p.name: file_entry(p) for p in sorted(staging.iterdir())},
            dataset={
                "category": category.name,
                "train_good": len(list_images(category.train_good)),
                "test_good": int((labels == 0).sum()),
                "test_defect": int(labels.sum()),
                "defect_kinds": category.defect_kinds,
            },
            versions=_versions(),
        )
        provisional = Bundle(path=staging, manifest=manifest)
        scores: dict[str, np.ndarray] = {}
        evaluated = {}
        for v in variants:
            scores[v], evaluated[v] = _evaluate(provisional, v, test_images, labels)
            logger.info(
                "%s: image AUROC %.4f, F1 %.4f",
                v,
                evaluated[v].metrics["image_auroc"],
                evaluated[v].metrics["f1"],
            )
        agreement = {}
        if "int8" in scores:
            same = (scores["fp32"] >= evaluated["fp32"].threshold.value) == (
                scores["int8"] >= evaluated["int8"].threshold.value
            )
            agreement = {
                "int8_vs_fp32_spearman": spearman(scores["fp32"], scores["int8"]),
                "int8_vs_fp32_verdict_agreement": float(same.mean()),
                "int8_auroc_drop": evaluated["fp32"].metrics["image_auroc"]
                - evaluated["int8"].metrics["image_auroc"],
            }
        manifest = manifest.model_copy(update={"variants": evaluated, "metrics": agreement})
        path = install_bundle(staging, Path(out), manifest)
    final = Manifest.model_validate_json((path / "manifest.json").read_bytes())
    logger.info("bundle %s written (%s)", path, ", ".join(variants))
    return ExportResult(
        bundle=path, manifest=final, trained=trained, scores=scores, labels=labels, test_paths=test_paths
    )
