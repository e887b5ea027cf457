"""`edge-ad export`: train -> FP32 IR -> NNCF INT8 (gated) -> threshold -> report -> bundle.

Scores, thresholds and metrics are computed by the runtime (:class:`AnomalyModel`) on the IRs
that ship, so the manifest describes exactly what the device will do.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import openvino as ov
from tqdm import tqdm

import edge_ad
from edge_ad.bundle import (
    ACCEPTANCE_FILE,
    AcceptanceSet,
    AcceptanceSpec,
    Bundle,
    GoldenImage,
    InputSpec,
    Manifest,
    Threshold,
    Variant,
    file_entry,
    install_bundle,
    next_version,
    pick_acceptance,
)
from edge_ad.bundle.signing import load_private_key, sign_manifest
from edge_ad.calibrate.metrics import auroc, classification_stats, pr_auc, spearman
from edge_ad.calibrate.threshold import choose_threshold
from edge_ad.datasets.layout import Category, find_category, list_images, read_images
from edge_ad.errors import DatasetError
from edge_ad.export.input_size import (
    RULE_CHOSEN,
    RULE_FIXED,
    RULE_ONLY,
    SizeTrial,
    candidate_sizes,
    choose_size,
    size_table,
)
from edge_ad.export.model_choice import ModelTrial, choose_model, model_table
from edge_ad.export.models import Trained, train
from edge_ad.export.quantize import quantize
from edge_ad.export.recipe import ExportRecipe
from edge_ad.export.report import build_report
from edge_ad.export.split import Split
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.patchcore_graph import EMBEDDING_OUTPUT, MAP_OUTPUT, SCORE_OUTPUT, output_names
from edge_ad.inference.preprocess import to_batch
from edge_ad.types import is_ng

__all__ = ["ExportResult", "Gate", "Split", "export_bundle", "split_test"]

logger = logging.getLogger(__name__)

FILES = {"fp32": ("model.xml", "model.bin"), "int8": ("model_int8.xml", "model_int8.bin")}
OUTPUTS = {"score": SCORE_OUTPUT, "map": MAP_OUTPUT, "embedding": EMBEDDING_OUTPUT}  # manifest key -> IR output name


@dataclass(frozen=True)
class Gate:
    """INT8 accuracy gate on the validation split."""

    mode: str
    max_drop: float
    fp32_auroc: float
    int8_auroc: float

    @property
    def drop(self) -> float:
        """AUROC lost by INT8 (negative when INT8 is better)."""
        return self.fp32_auroc - self.int8_auroc

    @property
    def passed(self) -> bool:
        """Whether the drop is within the budget."""
        return self.drop <= self.max_drop + 1e-12


@dataclass
class ExportResult:
    """What an export produced (scores are per variant, on the test split)."""

    bundle: Path
    manifest: Manifest
    trained: Trained
    scores: dict[str, np.ndarray]
    labels: np.ndarray
    test_paths: list[Path]
    gate: Gate | None
    seconds: dict[str, float]


def split_test(category: Category) -> tuple[Split, Split]:
    """Deterministic validation/test split of test/: even positions of each kind validate, odd test."""
    parts: dict[str, list[tuple[Path, int, str]]] = {"validation": [], "test": []}
    for kind in ["good", *category.defect_kinds]:
        for i, path in enumerate(list_images(category.root / "test" / kind)):
            parts["validation" if i % 2 == 0 else "test"].append((path, int(kind != "good"), kind))
    splits = []
    for name, items in parts.items():
        labels = np.array([label for _, label, _ in items])
        if len(items) < 2 or labels.min() == labels.max():
            raise DatasetError(
                f"{category.root}/test: needs at least 2 good and 2 defect images (under test/good and "
                "test/<defect>) to choose a threshold and measure accuracy"
            )
        paths = [p for p, _, _ in items]
        splits.append(Split(name, paths, labels, [k for _, _, k in items], read_images(paths)))
    return splits[0], splits[1]


def _versions() -> dict[str, str]:
    out = {"edge_ad": edge_ad.__version__}
    for pkg in ("anomalib", "openvino", "nncf", "torch", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _scores(bundle: Bundle, variant: str, split: Split, latency_ms: list[float] | None = None) -> np.ndarray:
    """Runtime scores of a split; ``latency_ms`` collects each frame's latency but the first (warm-up)."""
    model = AnomalyModel(bundle, variant=variant, device="CPU")
    with tqdm(total=len(split.images), desc=f"{variant} {split.name}", leave=False) as bar:
        return model.score_images(split.images, progress=lambda _: bar.update(), latency_ms=latency_ms)


def _latency(ms: list[float]) -> dict[str, float | int]:
    """``metrics.latency_ms[variant]``: per-frame p50/p99 while scoring (this workstation's CPU, one request)."""
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "frames": len(ms)}


def _metrics(split: Split, scores: np.ndarray, threshold: float) -> dict[str, float]:
    stats = classification_stats(split.labels, scores, threshold)
    recall_per_kind = {
        f"recall_{kind}": float((scores[[k == kind for k in split.kinds]] >= threshold).mean())
        for kind in sorted(set(split.kinds) - {"good"})
    }
    return {
        "image_auroc": auroc(split.labels, scores),
        "pr_auc": pr_auc(split.labels, scores),
        **{k: float(v) for k, v in stats.items()},
        **recall_per_kind,
    }


def _golden(staging: Path, val: Split, scores: dict[str, dict[str, np.ndarray]]) -> list[GoldenImage]:
    """Copy the first good and the first defect validation image into the bundle with their scores."""
    folder = staging / "golden"
    folder.mkdir()
    golden = []
    for label in (0, 1):
        i = int(np.flatnonzero(val.labels == label)[0])
        name = f"golden/{val.kinds[i]}_{val.paths[i].name}"
        shutil.copyfile(val.paths[i], staging / name)
        per_variant = {v: float(scores[v]["validation"][i]) for v in scores}
        golden.append(GoldenImage(file=name, label=label, scores=per_variant))  # type: ignore[arg-type]
    return golden


def _acceptance(staging: Path, val: Split, fp32_scores: np.ndarray, spec: InputSpec, budget: float) -> AcceptanceSpec:
    """Write the acceptance set: validation images at model resolution, their labels and FP32 scores."""
    idx = pick_acceptance(val.labels, spec.height, spec.width)
    batches = np.stack([to_batch(val.images[i], spec.height, spec.width, spec.roi)[0] for i in idx])
    kinds = np.array([val.kinds[i] for i in idx])
    accepted = AcceptanceSet(batches, val.labels[idx], kinds, np.asarray(fp32_scores, dtype=np.float64)[idx])
    accepted.write(staging / ACCEPTANCE_FILE)
    return accepted.spec(budget, "validation")


NOTHING_QUANTIZED = "nothing quantized"  # manifest metrics.int8.gate when NNCF kept every layer FP32


def quantized_ops(model: ov.Model) -> int:
    """How many FakeQuantize ops NNCF left in ``model`` (0: it is the FP32 graph)."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())


def _signer(recipe: ExportRecipe) -> Callable[[Path], object] | None:
    """What signs the new version's manifest (None: unsigned). The key is read before training, not after."""
    if recipe.signing.key is None:
        return None
    private = load_private_key(recipe.signing.key, "signing.key (--sign-key)")
    return lambda staging: sign_manifest(staging, private, "export")


def _provisional_manifest(
    name: str, trained: Trained, recipe: ExportRecipe, staging: Path, variants: list[str], outputs: list[str]
) -> Manifest:
    """The manifest the runtime needs to score ``staging``'s IRs (threshold and metrics still to come)."""
    placeholder = Threshold(value=0.0, method="manual")
    return Manifest(
        name=name,
        version="0",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=trained.spec(),
        input=InputSpec(
            height=trained.size,
            width=trained.size,
            normalization={"mean": list(trained.normalization[0]), "std": list(trained.normalization[1])},
            roi=recipe.roi,
        ),
        outputs={key: output for key, output in OUTPUTS.items() if output in outputs},
        variants={
            v: Variant(xml=FILES[v][0], bin=FILES[v][1], precision=v.upper(), threshold=placeholder) for v in variants
        },
        default_variant=variants[-1],
        files={p.name: file_entry(p) for p in sorted(staging.iterdir()) if p.is_file()},
    )


def _source_size(category: Category, roi: tuple[int, int, int, int] | None) -> tuple[int, int]:
    """(width, height) the model input is made from: the ROI, or the first training image."""
    if roi is not None:
        return roi[2], roi[3]
    height, width = read_images(list_images(category.train_good)[:1])[0].shape[:2]
    return width, height


@dataclass(frozen=True)
class Trial:
    """A trained candidate's FP32 IR scored on the validation split by the runtime, like the final bundle."""

    trained: Trained
    validation_auroc: float
    p50_ms: float
    fp32: ov.Model


def _trial(name: str, trained: Trained, recipe: ExportRecipe, val: Split, staging: Path) -> Trial:
    staging.mkdir()
    fp32 = trained.scoring_ir()
    ov.save_model(fp32, staging / FILES["fp32"][0], compress_to_fp16=False)
    trained.write_extras(staging, fp32, None)
    manifest = _provisional_manifest(name, trained, recipe, staging, ["fp32"], output_names(fp32))
    latency: list[float] = []
    scores = _scores(Bundle(path=staging, manifest=manifest), "fp32", val, latency)
    return Trial(trained, auroc(val.labels, scores), float(np.percentile(latency, 50)), fp32)


def _choose_model(
    category: Category, recipe: ExportRecipe, name: str, val: Split, workdir: Path
) -> tuple[ExportRecipe, dict | None, dict[int, Trial]]:
    """``model.type: auto``: each candidate family fitted and tried at one size; the recipe with the chosen type.

    Returns the recipe (unchanged unless auto), ``metrics.model_choice`` (None unless auto) and the chosen
    family's trial at the trial size (trained, converted and scored: not done again).
    """
    if recipe.model.type != "auto":
        return recipe, None, {}
    m = recipe.model
    size = m.image_size or max(s for s in candidate_sizes(_source_size(category, recipe.roi), "patchcore") if s <= 192)
    logger.info("[1/5] model auto: trying %s at %d px", ", ".join(m.auto_candidates), size)
    trials, tried = [], {}
    for kind in m.auto_candidates:
        candidate = _with_model(recipe, type=kind, image_size=size)
        trained = train(category, candidate, workdir / f"anomalib-{kind}")
        tried[kind] = _trial(name, trained, candidate, val, workdir / f"auto-{kind}")
        trials.append(
            ModelTrial(kind, size, tried[kind].validation_auroc, tried[kind].p50_ms, round(trained.fit_seconds, 2))
        )
    chosen = choose_model(trials, m.auto_latency_ms)
    for t in trials:
        logger.info(
            "%s: validation AUROC %.4f, p50 %.2f ms%s",
            t.type,
            t.validation_auroc,
            t.p50_ms,
            " <- chosen" * (t.type == chosen),
        )
    return _with_model(recipe, type=chosen), model_table(trials, chosen, m.auto_latency_ms), {size: tried[chosen]}


def _fit(
    category: Category,
    recipe: ExportRecipe,
    name: str,
    val: Split,
    workdir: Path,
    prefit: dict[int, Trial] | None = None,
) -> tuple[Trained, dict, ov.Model | None]:
    """Train at the recipe's input size, or at each candidate size and keep the best small one.

    ``prefit``: trials of this recipe already made, by size (not trained or scored again). Returns the
    trained model, ``metrics.input_size`` (trials, choice, rule, downscale note) and the chosen model's
    FP32 IR when a trial already converted it (None: not converted yet).
    """
    source = _source_size(category, recipe.roi)
    images = len(list_images(category.train_good))
    fixed = recipe.model.image_size
    sizes = [fixed] if fixed is not None else candidate_sizes(source, recipe.model.type)
    logger.info(
        "[1/5] training %s on %s (%d good images) at %s px",
        recipe.model.type,
        category.root,
        images,
        ", ".join(map(str, sizes)),
    )
    prefit = prefit or {}
    fitted = {
        size: prefit[size].trained
        if size in prefit
        else train(category, _with_model(recipe, image_size=size), workdir / f"anomalib-{size}")
        for size in sizes
    }
    if len(sizes) == 1:
        rule = RULE_FIXED if fixed is not None else RULE_ONLY
        converted = prefit[sizes[0]].fp32 if sizes[0] in prefit else None
        return fitted[sizes[0]], size_table([], sizes[0], rule, source, recipe.roi), converted
    scored = {
        size: prefit.get(size) or _trial(name, trained, recipe, val, workdir / f"size-{size}")
        for size, trained in fitted.items()
    }
    trials = [
        SizeTrial(size, scored[size].validation_auroc, round(trained.fit_seconds, 2))
        for size, trained in fitted.items()
    ]
    chosen = choose_size(trials)
    for t in trials:
        logger.info(
            "input %d px: validation AUROC %.4f%s", t.size, t.validation_auroc, " <- chosen" * (t.size == chosen)
        )
    return fitted[chosen], size_table(trials, chosen, RULE_CHOSEN, source, recipe.roi), scored[chosen].fp32


def _with_model(recipe: ExportRecipe, **model: object) -> ExportRecipe:
    return recipe.model_copy(update={"model": recipe.model.model_copy(update=model)})


def export_bundle(recipe: ExportRecipe) -> ExportResult:
    """Train the recipe's model and install a new bundle version under ``recipe.out/<name>/``.

    The FP32 variant is always installed. With ``recipe.int8.mode != "none"`` an INT8 variant is
    added; if its validation AUROC drops by more than ``max_drop`` it is kept but marked
    ``rejected`` (the device then runs FP32) and ``result.gate.passed`` is False.
    """
    sign = _signer(recipe)
    category = find_category(recipe.data)
    name = recipe.name or category.name
    val, test = split_test(category)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="edge-ad-export-") as tmp:
        tmp_path = Path(tmp)
        recipe, model_choice, prefit = _choose_model(category, recipe, name, val, tmp_path)
        trained, input_size, converted = _fit(category, recipe, name, val, tmp_path, prefit)
        seconds["fit"] = trained.fit_seconds
        staging = tmp_path / "bundle"
        staging.mkdir()

        logger.info("[2/5] converting to OpenVINO IR")
        fp32 = converted if converted is not None else trained.scoring_ir()  # the size choice may have done it
        ov.save_model(fp32, staging / FILES["fp32"][0], compress_to_fp16=False)
        int8 = None
        if recipe.int8.mode != "none":
            logger.info("[3/5] NNCF INT8 (%s, max AUROC drop %.4f)", recipe.int8.mode, recipe.int8_budget)
            started = time.perf_counter()
            calibration_dir = recipe.int8.calibration_dir or category.train_good
            if not calibration_dir.is_dir() or not list_images(calibration_dir):
                raise DatasetError(f"int8.calibration_dir: {calibration_dir} has no images; point it at good images")
            calibration = read_images(list_images(calibration_dir)[: recipe.int8.calibration_images])
            int8 = quantize(fp32, trained, calibration, recipe.int8, validation=(val.images, val.labels))
            seconds["quantize"] = time.perf_counter() - started
            if not quantized_ops(int8):
                # accuracy-aware mode reverts layers until the budget holds, possibly all of them:
                # an "INT8" variant that is the FP32 graph would only mislead whoever reads the manifest
                logger.warning(
                    "INT8 (%s): no layer stays quantized within the budget %.4f; the bundle has FP32 only",
                    recipe.int8.mode,
                    recipe.int8_budget,
                )
                int8 = None
            else:
                ov.save_model(int8, staging / FILES["int8"][0], compress_to_fp16=False)
        trained.write_extras(staging, fp32, int8)

        logger.info(
            "[4/5] evaluating with the runtime on validation (%d) and test (%d) images",
            len(val.paths),
            len(test.paths),
        )
        variants = ["fp32"] + (["int8"] if int8 is not None else [])
        manifest = _provisional_manifest(name, trained, recipe, staging, variants, output_names(fp32))
        provisional = Bundle(path=staging, manifest=manifest)
        latency: dict[str, list[float]] = {v: [] for v in variants}
        scores = {v: {s.name: _scores(provisional, v, s, latency[v]) for s in (val, test)} for v in variants}
        evaluated: dict[str, Variant] = {}
        for v in variants:
            t = recipe.threshold
            threshold = choose_threshold(
                recipe.threshold_method,
                scores[v]["validation"][val.good],
                scores[v]["validation"][~val.good],
                t.k,
                t.percentile,
            )
            metrics = _metrics(test, scores[v]["test"], threshold.value)
            metrics["validation_auroc"] = auroc(val.labels, scores[v]["validation"])
            evaluated[v] = manifest.variants[v].model_copy(update={"threshold": threshold, "metrics": metrics})  # type: ignore[index]

        gate = None
        summary: dict = {"split": {"validation": len(val.paths), "test": len(test.paths)}, "input_size": input_size}
        if model_choice is not None:
            summary["model_choice"] = model_choice
        summary["latency_ms"] = {v: _latency(ms) for v, ms in latency.items()}
        if int8 is None and recipe.int8.mode != "none":
            summary["int8"] = {"mode": recipe.int8.mode, "max_drop": recipe.int8_budget, "gate": NOTHING_QUANTIZED}
        if int8 is not None:
            gate = Gate(
                recipe.int8.mode,
                recipe.int8_budget,
                evaluated["fp32"].metrics["validation_auroc"],
                evaluated["int8"].metrics["validation_auroc"],
            )
            same = is_ng(scores["fp32"]["test"], evaluated["fp32"].threshold.value) == is_ng(
                scores["int8"]["test"], evaluated["int8"].threshold.value
            )
            summary["int8"] = {
                "mode": gate.mode,
                "max_drop": gate.max_drop,
                "validation_auroc_drop": gate.drop,
                "gate": "pass" if gate.passed else "rejected",
                "spearman_vs_fp32": spearman(scores["fp32"]["test"], scores["int8"]["test"]),
                "verdict_agreement_vs_fp32": float(same.mean()),
            }
            if not gate.passed:
                evaluated["int8"] = evaluated["int8"].model_copy(update={"status": "rejected"})
                logger.error("INT8 rejected: validation AUROC drop %.4f > budget %.4f", gate.drop, gate.max_drop)
        default = "int8" if gate is not None and gate.passed else "fp32"
        manifest = manifest.model_copy(
            update={
                "variants": evaluated,
                "default_variant": default,
                "metrics": summary,
                "dataset": {
                    "category": category.name,
                    "path": str(category.root),
                    "train_good": len(list_images(category.train_good)),
                    "defect_kinds": category.defect_kinds,
                },
                "versions": _versions(),
            }
        )
        golden = _golden(staging, val, scores)
        acceptance = _acceptance(staging, val, scores["fp32"]["validation"], manifest.input, recipe.int8_budget)
        added = [g.file for g in golden] + [acceptance.file]
        files = {**manifest.files, **{name: file_entry(staging / name) for name in added}}
        version = next_version(Path(recipe.out) / name)  # the report's title names the version it will be
        manifest = manifest.model_copy(
            update={"golden": golden, "acceptance": acceptance, "files": files, "version": version}
        )
        logger.info("[5/5] writing the evaluation report and installing the bundle")
        report = build_report(staging, manifest, {"validation": val, "test": test}, scores)
        reported = {str(p.relative_to(staging)): file_entry(p) for p in sorted(report.parent.rglob("*")) if p.is_file()}
        manifest = manifest.model_copy(update={"files": {**manifest.files, **reported}})  # signed with the rest
        path = install_bundle(staging, Path(recipe.out), manifest, sign=sign)
    seconds["total"] = time.perf_counter() - clock
    final = Manifest.model_validate_json((path / "manifest.json").read_bytes())
    return ExportResult(
        bundle=path,
        manifest=final,
        trained=trained,
        scores={v: scores[v]["test"] for v in variants},
        labels=test.labels,
        test_paths=test.paths,
        gate=gate,
        seconds=seconds,
    )
