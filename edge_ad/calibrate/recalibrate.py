"""On-device recalibration: re-teach "good" from fresh frames, check acceptance, install atomically.

Torch-free (OpenVINO + numpy). A threshold-only refit rescores the frames with the active bundle;
``refit_memory`` (PatchCore) rebuilds the memory bank from the bundle's feature-extractor IR and
writes new scoring models with it. Nothing changes unless the result passes acceptance.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from edge_ad.bundle import Bundle, Manifest, Threshold, load_bundle, read_acceptance
from edge_ad.bundle.manifest import MANIFEST_NAME, RECALIBRATION_REPORT, recalibration_root
from edge_ad.bundle.signing import read_signature, sign_manifest
from edge_ad.bundle.store import (
    file_entry,
    install_bundle,
    load_private,
    next_version,
    prune_versions,
    resolve_version_dir,
    store_writer,
)
from edge_ad.bundle.trust import Trust
from edge_ad.calibrate.coreset import kcenter_greedy
from edge_ad.calibrate.histogram import score_histogram
from edge_ad.calibrate.threshold import choose_threshold
from edge_ad.commissioning import CommissionRecord, Resolution, choose, decide, resolve_variant, write_record
from edge_ad.commissioning.record import manifest_sha256
from edge_ad.config import EdgeAdConfig, RecalibrationConfig
from edge_ad.errors import BundleError, ConfigError, DatasetError, EdgeAdError
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.patchcore_graph import (
    EMBEDDING_OUTPUT,
    SCORE_OUTPUT,
    compose_patchcore,
    features_ir,
    save_scoring_ir,
    search_options,
)
from edge_ad.inference.precision import RUN_VARIANTS, compile_pinned
from edge_ad.inference.preprocess import to_batch
from edge_ad.integrity import use_station_key
from edge_ad.report.recalibration import write_recalibration_report
from edge_ad.types import Frame, is_ng

__all__ = ["Outcome", "recalibrate", "require_frames"]

logger = logging.getLogger(__name__)
Progress = Callable[[str, int], None]  # (stage, frames done in this stage)
FOLDS = 4  # cross-fitting folds for the threshold after a memory-bank refit


@dataclass(frozen=True)
class Check:
    """One variant's acceptance numbers: new model and threshold against the active bundle's."""

    false_reject: float  # on held-back good frames
    old_false_reject: float
    recall: float | None = None  # on the defect frames
    old_recall: float | None = None


@dataclass
class Outcome:
    """What a recalibration measured and decided (top-level numbers: the variant the new version runs here)."""

    passed: bool
    variant: str
    method: str
    refit_memory: bool
    old_threshold: float
    new_threshold: float
    target_false_reject: float
    checks: dict[str, Check]  # every variant measured; ``variant`` among them
    frames: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    histogram: Path | None = None
    report: Path | None = None  # the HTML report: in the installed version, else next to the histogram
    installed: Path | None = None
    parent: str = ""
    refused: dict[str, list[str]] = field(default_factory=dict)  # variants the new version will not run, and why
    known: dict[str, float] = field(default_factory=dict)  # the bundle's acceptance set: recall and false rejects

    @property
    def false_reject(self) -> float:
        """New model and threshold on the held-back good frames (the variant that will run)."""
        return self.checks[self.variant].false_reject

    @property
    def old_false_reject(self) -> float:
        """The active bundle on the same frames."""
        return self.checks[self.variant].old_false_reject

    @property
    def recall(self) -> float | None:
        """New model and threshold on the defect frames (None without defects)."""
        return self.checks[self.variant].recall

    @property
    def old_recall(self) -> float | None:
        """The active bundle on the defect frames."""
        return self.checks[self.variant].old_recall


def require_frames(count: int, rc: RecalibrationConfig) -> None:
    """Refuse ``count`` good frames before any work when they are fewer than ``rc.needed_good_frames()``.

    Raises:
        DatasetError: One line: how many are needed, and what to do.
    """
    if count >= rc.needed_good_frames():
        return
    if count < rc.min_frames:
        raise DatasetError(
            f"recalibrate: {count} good frames, need at least {rc.min_frames} "
            "(capture more with --from-camera N, or lower recalibration.min_frames)"
        )
    every, needed = rc.holdback_every, rc.needed_held_back()
    raise DatasetError(
        f"recalibrate: {count} good frames hold back {count // every} for acceptance; "
        f"a {rc.target_false_reject:.1%} false-reject target needs at least {needed} held back "
        f"({every * needed} good frames at holdback_every {every}): capture more, "
        "or raise recalibration.target_false_reject"
    )


def _split(good: list[np.ndarray], every: int) -> tuple[list, list]:
    """(fit frames, held-back frames): every Nth frame is held back for acceptance."""
    held = [img for i, img in enumerate(good) if i % every == every - 1]
    fit = [img for i, img in enumerate(good) if i % every != every - 1]
    return fit, held


def _score(model: AnomalyModel, images: list[np.ndarray], stage: str, progress: Progress) -> np.ndarray:
    return model.score_images(images, progress=lambda done: progress(stage, done))


def _features(bundle: Bundle, images: list[np.ndarray], progress: Progress) -> list[np.ndarray]:
    """Patch embeddings ``[h * w, D]`` per image from the bundle's FP32 feature-extractor IR."""
    spec = bundle.manifest.input
    core = ov.Core()
    features = bundle.path / "features.xml"
    compiled = compile_pinned(core, core.read_model(features), "CPU", "f32", what=str(features))
    out = []
    for i, image in enumerate(images):
        emb = compiled(to_batch(image, spec.height, spec.width, spec.roi))[0]
        out.append(np.ascontiguousarray(emb[0].reshape(emb.shape[1], -1).T, dtype=np.float32))
        progress("features", i + 1)
    return out


@dataclass
class _Refit:
    """A refitted memory bank: what was done, and cross-fitted scores of the fit frames per variant."""

    record: dict
    scores: dict[str, np.ndarray]


def _refit_memory(bundle: Bundle, images: list[np.ndarray], staging: Path, progress: Progress) -> _Refit:
    """Write a new memory bank and scoring IRs into ``staging``.

    The bank is built from every fit frame. Scores for the threshold are cross-fitted over ``FOLDS``
    folds: each frame is scored by a bank built from the other folds, never by one built from
    itself (which would score ~0 and give a threshold far too low).
    """
    m = bundle.manifest
    if m.model.type != "patchcore" or "features.xml" not in m.files or "memory_bank.npy" not in m.files:
        raise EdgeAdError(
            f"--refit-memory: {bundle.path} is a {m.model.type} bundle without a feature IR and memory bank; "
            "only PatchCore bundles can refit (recalibrate the threshold only, or re-export)"
        )
    ratio = float(m.model.params.get("coreset_ratio", 0.1))
    features = _features(bundle, images, progress)

    def bank_of(chunks: list[np.ndarray]) -> np.ndarray:
        patches = np.vstack(chunks)
        return patches[kcenter_greedy(patches, max(1, int(patches.shape[0] * ratio)), seed=0)]

    bank = bank_of(features)
    np.save(staging / "memory_bank.npy", bank)
    folds = [list(range(k, len(images), FOLDS)) for k in range(FOLDS)]
    # one bank per fold, built from the other folds; shared by every variant (same FP32 features)
    fold_banks = [bank_of([features[i] for j, fold in enumerate(folds) if j != k for i in fold]) for k in range(FOLDS)]
    core, spec = ov.Core(), m.input
    scores: dict[str, np.ndarray] = {}
    for name, variant in m.variants.items():
        features_xml = features_ir(name)
        if variant.status != "ok" or features_xml not in m.files:
            continue
        save_scoring_ir(staging / features_xml, bank, m.model.params, staging / variant.xml)
        extractor = core.read_model(staging / features_xml)
        cross = np.zeros(len(images))
        for scored, fold_bank in zip(folds, fold_banks, strict=True):
            compiled = compile_pinned(
                core,
                compose_patchcore(extractor, fold_bank, **search_options(m.model.params, fold_bank.shape[0])),
                "CPU",
                "f32",
            )
            for i in scored:
                out = compiled(to_batch(images[i], spec.height, spec.width, spec.roi))
                cross[i] = float(out[SCORE_OUTPUT].reshape(-1)[0])
        scores[name] = cross
    record = {"patches": int(sum(f.shape[0] for f in features)), "memory_bank_rows": int(bank.shape[0])}
    return _Refit(record, scores)


def _threshold(current: Threshold, good: np.ndarray, defects: np.ndarray | None, k: float | None) -> Threshold:
    """The bundle's own method on fresh scores: f1 needs defect frames, else sigma (manual -> sigma)."""
    inputs, method = current.inputs, current.method
    if method == "f1" and defects is not None and len(defects):
        return choose_threshold("f1", good, defects, split="recalibration")
    if method == "percentile":
        percentile = float(inputs.get("percentile", 99.5))
        return choose_threshold("percentile", good, percentile=percentile, split="recalibration")
    return choose_threshold("sigma", good, k=float(k or inputs.get("k", 3.0)), split="recalibration")


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One writer of the models root at a time; clears what killed runs left behind."""
    with store_writer(root, "recalibrate"):
        for debris in root.glob(".recalibrate-*"):
            shutil.rmtree(debris, ignore_errors=True)
        for debris in root.glob("*/.*"):
            if debris.is_dir() and debris.name.endswith((".incoming", ".removing")):
                shutil.rmtree(debris, ignore_errors=True)
        yield


@contextlib.contextmanager
def _private_copies() -> Iterator[Path]:
    """A temporary folder only this process writes, for the private copy of the active version."""
    copies = Path(tempfile.mkdtemp(prefix="edge-ad-recalibrate-"))
    try:
        yield copies
    finally:
        shutil.rmtree(copies, ignore_errors=True)


@contextlib.contextmanager
def _staged(current: Bundle, root: Path) -> Iterator[Path]:
    """A private copy of the active bundle's runtime files next to the models (same filesystem)."""
    staging = Path(tempfile.mkdtemp(prefix=".recalibrate-", dir=root))
    try:
        for name in current.manifest.files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(current.path / name, target)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recalibrate(
    config: EdgeAdConfig,
    good: list[np.ndarray],
    defects: list[np.ndarray] | None = None,
    refit_memory: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    source: str = "",
    report_dir: Path | None = None,
    parts_checked: bool = False,
    activate: bool = True,
) -> Outcome:
    """Fit a new threshold (and optionally memory bank) and install it as a new version on PASS.

    Args:
        config: Station config (model path, device, variant and the recalibration section).
        good: Fresh good frames (BGR). Every ``holdback_every``-th is held back for acceptance.
        defects: Optional defect frames: enable ``f1`` and the recall check.
        refit_memory: PatchCore: rebuild the memory bank from the good frames.
        dry_run: Measure and report, change nothing.
        progress: Called as frames are processed.
        source: Where the frames came from (recorded in the manifest).
        report_dir: Where the histogram (and the report when nothing is installed) goes (default: the state dir).
        parts_checked: A technician checked that the frames show good parts: the look may have moved,
            so the active model rejecting them and the bundle's own good images failing are accepted
            (the bundle's own defects must still be caught).
        activate: Make a passing new version the active one (False: installed only, activated later by a person).

    Raises:
        DatasetError: Too few frames (see :func:`require_frames`).
        BundleError: The active bundle is missing or corrupt, or the disk is full.
    """
    rc = config.recalibration
    progress = progress or (lambda stage, n: None)
    require_frames(len(good), rc)
    trust = Trust.from_config(config.security)
    use_station_key(trust.station)  # the station's records and compile cache, as the daemon MACs them
    if trust.require and trust.station is None:
        raise ConfigError(
            "recalibrate: security.require_signature is on but security.station_key is not set, so the new "
            "version could not be signed; set it to the station key install-service created"
        )
    version_dir = resolve_version_dir(config.model.path)
    model_dir = version_dir.parent
    root = model_dir.parent
    state_dir = config.service.state_dir
    fit, held = _split(good, rc.holdback_every)
    started = datetime.now(timezone.utc)
    with _private_copies() as copies, _exclusive(root), _disk_full_is_clear(root):
        trust = replace(trust, copies=copies)  # nobody can swap a file of the active version under us
        current = load_private(version_dir, copies)
        trust.check(current)  # a version the station would refuse is not recalibrated either
        with _staged(current, root) as staging:
            refit = _refit_memory(current, fit, staging, progress) if refit_memory else None
            candidate = Bundle(path=staging, manifest=current.manifest)
            fitted = _fit(candidate, fit, defects, refit, config, progress)
            device = config.model.device
            known = _rescore_acceptance(current, staging, fitted.models["fp32"])
            manifest = _new_manifest(current, staging, fitted.models, fitted.thresholds, {})
            # the new version is commissioned here, on this device; every variant it would accept (and every
            # IR installed) is then held to the held-back good frames and the defects, and refused if it fails
            proposed = _commission_staged(staging, manifest, config)
            accepted = [n for n, c in proposed.record.candidates.items() if c.accepted] if proposed.record else []
            held_scores: dict[str, np.ndarray] = {}  # the held-back frames are scored once per variant
            checks = {
                name: _check(name, current, candidate, fitted, held, defects, device, progress, held_scores)
                for name in dict.fromkeys([*fitted.models, *accepted])
            }
            failures = {name: _failures(c, rc.target_false_reject) for name, c in checks.items()}
            if not parts_checked:
                failures["fp32"] += _active_rejects(current, checks["fp32"], len(held), rc.max_active_false_reject)
            known_numbers = known.judge(current.variant("fp32").threshold.value, fitted.thresholds["fp32"].value)
            failures["fp32"] += _known_failures(known_numbers, rc.target_false_reject, parts_checked)
            refused = {n: r for n, r in failures.items() if r and n != "fp32"}  # fp32 failing fails the outcome
            commissioned = _refuse(proposed.record, refused)
            runs = decide(commissioned, config.model.variant).variant if commissioned else "fp32"
            ir = RUN_VARIANTS[runs].ir
            threshold, old_threshold = fitted.thresholds[ir], current.variant(ir).threshold.value
            outcome = Outcome(
                passed=not failures["fp32"],
                variant=runs,
                method=threshold.method,
                refit_memory=refit_memory,
                old_threshold=old_threshold,
                new_threshold=threshold.value,
                target_false_reject=rc.target_false_reject,
                checks=checks,
                frames={"good": len(good), "fit": len(fit), "held_back": len(held)},
                parent=current.manifest.version,
                reasons=[f"fp32: {reason}" for reason in failures["fp32"]],
                refused=refused,
                known=known_numbers,
            )
            if defects:
                outcome.frames["defects"] = len(defects)
            histogram_dir = report_dir or state_dir / "recalibration"
            stamp = f"recalibration-{started:%Y%m%dT%H%M%S}"
            outcome.histogram = score_histogram(
                histogram_dir / f"{stamp}.png",
                {
                    "good (fit)": fitted.fit_scores[ir],
                    "good (held back)": held_scores[ir],
                    "defects": fitted.defect_scores[ir],
                },
                {"old": old_threshold, "new": threshold.value},
            )
            record = {**(refit.record if refit else {}), **_record(outcome, started, source), **_lineage(current)}
            manifest = manifest.model_copy(update={"recalibration": record, "version": next_version(model_dir)})
            installs = outcome.passed and not dry_run
            series = {  # per IR variant fitted, for the report's histograms
                v: {"good (fit)": fitted.fit_scores[v], "good (held back)": held_scores[v], "defects": on_defects}
                for v, on_defects in fitted.defect_scores.items()
            }
            outcome.report = write_recalibration_report(
                staging / RECALIBRATION_REPORT if installs else histogram_dir / f"{stamp}.html",
                outcome,
                manifest,
                current.manifest,
                series,
                dry_run=dry_run,
                commissioning=commissioned,
            )
            if not installs:
                return outcome
            files = {**manifest.files, RECALIBRATION_REPORT: file_entry(outcome.report)}  # signed with the rest
            outcome.installed = install_bundle(
                staging,
                root,
                manifest.model_copy(update={"files": files}),
                make_active=activate,
                sign=_signer(trust, config.station),
            )
            outcome.report = outcome.installed / RECALIBRATION_REPORT
            _keep_commissioning(commissioned, outcome.installed, state_dir)
            prune_versions(model_dir, rc.keep_versions)
            return outcome


def _signer(trust: Trust, station: str) -> Callable[[Path], object] | None:
    """Signs the new version with the station's own key (None: the station has none, the version is unsigned)."""
    private = trust.station
    return None if private is None else (lambda staging: sign_manifest(staging, private, f"station {station}"))


def _lineage(current: Bundle) -> dict:
    """The parent's signature and the root (the exported version the chain starts at), for the new manifest."""
    signature = read_signature(current.path)
    root = recalibration_root(current.manifest) if current.manifest.parent else current.manifest.version
    return {"parent_signature": signature.model_dump() if signature else None, "root": root}


def _commission_staged(staging: Path, manifest: Manifest, config: EdgeAdConfig) -> Resolution:
    """Commission the staged new version on this device (nothing is stored yet)."""
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return resolve_variant(Bundle(path=staging, manifest=manifest), config.model, None, context="recalibrate")


def _refuse(record: CommissionRecord | None, failures: dict[str, list[str]]) -> CommissionRecord | None:
    """The staged version's record with the variants that failed recalibration's checks refused, chosen again."""
    if record is None:
        return None
    candidates = {
        name: c.model_copy(
            update={"accepted": False, "reasons": [*c.reasons, *(f"recalibration: {r}" for r in failures[name])]}
        )
        if name in failures
        else c
        for name, c in record.candidates.items()
    }
    chosen, reason = choose(candidates)
    return record.model_copy(update={"candidates": candidates, "chosen": chosen, "reason": reason})


def _keep_commissioning(record: CommissionRecord | None, installed: Path, state_dir: Path) -> None:
    """The staged version's commissioning, keyed to the installed version: the daemon reuses it at reload."""
    if record is None:
        return
    bundle = load_bundle(installed, verify=False)
    m = bundle.manifest
    key = record.key.model_copy(update={"manifest_sha256": manifest_sha256(bundle), "bundle": f"{m.name} v{m.version}"})
    try:
        write_record(state_dir, record.model_copy(update={"key": key}))
    except OSError as exc:  # the daemon then commissions the new version itself at reload
        logger.warning("commissioning record of %s not written (%s)", installed, exc.strerror or exc)


def _check(
    name: str,
    current: Bundle,
    candidate: Bundle,
    fitted: _Fitted,
    held: list[np.ndarray],
    defects: list[np.ndarray] | None,
    device: str,
    progress: Progress,
    held_scores: dict[str, np.ndarray],
) -> Check:
    """False rejects and recall of variant ``name``: the candidate at its new threshold vs the active bundle.

    The candidate's scores of the held-back frames are kept in ``held_scores[name]`` (for the histogram).
    """
    ir = RUN_VARIANTS[name].ir
    new = fitted.models[name] if name in fitted.models else AnomalyModel(candidate, name, device)
    old = AnomalyModel(current, name, device)
    threshold, old_threshold = fitted.thresholds[ir].value, current.variant(ir).threshold.value
    held_new = held_scores[name] = _score(new, held, f"held-back {name}", progress)
    held_old = _score(old, held, f"held-back {name} (active)", progress)
    check = Check(
        false_reject=float(np.mean(is_ng(held_new, threshold))),
        old_false_reject=float(np.mean(is_ng(held_old, old_threshold))),
    )
    if not defects:
        return check
    defect_new = (
        fitted.defect_scores[name] if name in fitted.models else _score(new, defects, f"defects {name}", progress)
    )
    defect_old = _score(old, defects, f"defects {name} (active)", progress)
    assert defect_new is not None
    return Check(
        check.false_reject,
        check.old_false_reject,
        recall=float(np.mean(is_ng(defect_new, threshold))),
        old_recall=float(np.mean(is_ng(defect_old, old_threshold))),
    )


@dataclass(frozen=True)
class _Known:
    """The bundle's own labelled images (acceptance set): FP32 scores by the active and by the new model."""

    labels: np.ndarray
    old: np.ndarray
    new: np.ndarray

    def judge(self, old_threshold: float, new_threshold: float) -> dict[str, float]:
        """Recall on its defects and false rejects on its good images, before and after (empty without a set)."""
        if not len(self.labels):
            return {}
        bad, good = self.labels == 1, self.labels == 0
        return {
            "recall_old": float(np.mean(is_ng(self.old[bad], old_threshold))),
            "recall_new": float(np.mean(is_ng(self.new[bad], new_threshold))),
            "false_reject_old": float(np.mean(is_ng(self.old[good], old_threshold))),
            "false_reject_new": float(np.mean(is_ng(self.new[good], new_threshold))),
            "defects": int(bad.sum()),
            "good": int(good.sum()),
        }


def _rescore_acceptance(current: Bundle, staging: Path, fp32: AnomalyModel) -> _Known:
    """The acceptance set of the new version: the same images with the new FP32 model's scores."""
    spec, ref = current.manifest.acceptance, read_acceptance(current)
    if spec is None or ref is None:
        return _Known(np.array([]), np.array([]), np.array([]))
    scores = np.array([fp32.infer_batch(batch[None]).score for batch in ref.batches])
    ref.rescored(scores).write(staging / spec.file)
    return _Known(ref.labels, ref.fp32_scores, scores)


def _known_failures(known: dict[str, float], target: float, parts_checked: bool) -> list[str]:
    """Why the new threshold would misjudge the bundle's own labelled images (empty: it does not).

    Its defects must be caught at least as well as by the active model, always: "good" frames with
    defects among them raise the threshold above real defects. Its good images must not be rejected
    more than by the active model (or the target): frames of an empty belt or a still part pull the
    threshold below every real part; a technician who checked the parts may accept that
    (``parts_checked``: the look really moved).
    """
    if not known:
        return []
    out = []
    if known["recall_new"] < known["recall_old"]:
        out.append(
            f"the bundle's own {known['defects']} defect images would be caught {known['recall_old']:.1%} -> "
            f"{known['recall_new']:.1%}: the frames may contain defects (or refit the memory bank if the look moved)"
        )
    limit = max(known["false_reject_old"], target)
    if not parts_checked and known["false_reject_new"] > limit:
        out.append(
            f"the bundle's own {known['good']} good images would be rejected {known['false_reject_old']:.1%} -> "
            f"{known['false_reject_new']:.1%}: the frames may not show parts (empty belt, a still part); "
            "check them, or after checking run edge-ad recalibrate --parts-checked"
        )
    return out


@dataclass
class _Fitted:
    """Per runnable variant: the candidate model, its scores of the fit and defect frames, its threshold."""

    models: dict[str, AnomalyModel] = field(default_factory=dict)
    fit_scores: dict[str, np.ndarray] = field(default_factory=dict)
    defect_scores: dict[str, np.ndarray | None] = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)


def _fit(
    candidate: Bundle,
    fit: list[np.ndarray],
    defects: list[np.ndarray] | None,
    refit: _Refit | None,
    config: EdgeAdConfig,
    progress: Progress,
) -> _Fitted:
    """Score the frames with every runnable precision of the candidate and fit each its own threshold."""
    out = _Fitted()
    for name, variant in candidate.manifest.variants.items():
        if variant.status != "ok":
            continue
        model = out.models[name] = AnomalyModel(candidate, name, config.model.device)
        out.fit_scores[name] = refit.scores[name] if refit else _score(model, fit, f"threshold {name}", progress)
        out.defect_scores[name] = _score(model, defects, f"defects {name}", progress) if defects else None
        out.thresholds[name] = _threshold(
            variant.threshold, out.fit_scores[name], out.defect_scores[name], config.recalibration.sigma_k
        )
    return out


def _record(outcome: Outcome, started: datetime, source: str) -> dict:
    """What the manifest remembers about this recalibration."""
    return {
        "at": started.isoformat(timespec="seconds"),
        "source": source,
        "refit_memory": outcome.refit_memory,
        "frames": outcome.frames,
        "false_reject": outcome.false_reject,
        "old_false_reject": outcome.old_false_reject,
        "recall": outcome.recall,
        "old_recall": outcome.old_recall,
        "target_false_reject": outcome.target_false_reject,
        "variant": outcome.variant,
        "checks": {name: asdict(check) for name, check in outcome.checks.items()},
        "refused": outcome.refused,
        "acceptance_set": outcome.known,
    }


@contextlib.contextmanager
def _disk_full_is_clear(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BundleError(
                f"recalibrate: disk full while writing under {root} ({exc.strerror}); "
                "nothing was changed - free space and run it again"
            ) from None
        raise


def _failures(check: Check, target_false_reject: float) -> list[str]:
    """Why one variant's new model and threshold fail acceptance (empty: it passes)."""
    out = []
    if check.false_reject > target_false_reject:
        out.append(
            f"false rejects {check.false_reject:.1%} on held-back good frames > target {target_false_reject:.1%}"
        )
    if check.recall is not None and check.old_recall is not None and check.recall < check.old_recall:
        out.append(f"recall {check.recall:.1%} < active bundle's {check.old_recall:.1%}")
    return out


def _active_rejects(current: Bundle, check: Check, held: int, limit: float) -> list[str]:
    """Why the held-back "good" frames may be defects: the active bundle rejects more than ``limit`` of them."""
    if check.old_false_reject <= limit:
        return []
    threshold = current.variant(RUN_VARIANTS["fp32"].ir).threshold.value
    return [
        f"the active model (v{current.manifest.version}, threshold {threshold:.6g}) rejects "
        f"{round(check.old_false_reject * held)} of {held} held-back frames ({check.old_false_reject:.1%}) "
        f"> {limit:.1%}: the camera may be showing defects; check the parts, "
        "or after checking them run edge-ad recalibrate --parts-checked"
    ]


def _new_manifest(
    current: Bundle, staging: Path, models: dict[str, AnomalyModel], thresholds: dict[str, Threshold], record: dict
) -> Manifest:
    """The parent's manifest with new thresholds, files, golden scores (rescored) and lineage."""
    variants = {
        name: v.model_copy(update={"threshold": thresholds[name]}) if name in thresholds else v
        for name, v in current.manifest.variants.items()
    }
    golden = []
    for g in current.manifest.golden:
        image = cv2.imread(str(staging / g.file), cv2.IMREAD_COLOR)
        frame = Frame(image=image, ts=0.0, index=1, origin=g.file)
        scores = {**g.scores, **{name: model.infer(frame).score for name, model in models.items()}}
        golden.append(g.model_copy(update={"scores": scores}))
    outputs = dict(current.manifest.outputs)
    if any(model.embeds for model in models.values()):  # a memory-bank refit writes the current graph
        outputs["embedding"] = EMBEDDING_OUTPUT
    return current.manifest.model_copy(
        update={
            "outputs": outputs,
            "variants": variants,
            "golden": golden,
            "files": {name: file_entry(staging / name) for name in current.manifest.files},
            "parent": current.manifest.version,
            "recalibration": record,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
