"""Commissioning: score the acceptance set with every candidate variant on this device and decide.

A variant is accepted when, on the bundle's acceptance set and on this device, its verdicts agree
with FP32's (at the threshold it would judge with) in at least ``min_agreement`` of the images and
its AUROC is within the recipe's budget of FP32's. The fastest accepted variant is chosen; FP32
keeps the job unless another is at least :data:`GAIN` faster.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import openvino as ov

from edge_ad.bundle import AcceptanceSet, Bundle, read_acceptance
from edge_ad.calibrate.metrics import auroc
from edge_ad.commissioning.record import CandidateResult, CommissionKey, CommissionRecord, manifest_sha256
from edge_ad.errors import EdgeAdError, ModelLoadError, first_line
from edge_ad.inference.device import capabilities, device_identity, pick_device
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.precision import RUN_VARIANTS, RunVariant, plugin_default_precision
from edge_ad.inference.selftest import golden_frames
from edge_ad.types import is_ng

__all__ = [
    "BORDERLINE",
    "GAIN",
    "candidates",
    "choose",
    "commission",
    "commission_key",
    "judge_candidate",
    "relative_drift",
]

logger = logging.getLogger(__name__)

GAIN = 0.95  # a variant other than fp32 must take at most this fraction of fp32's time to be chosen
WARMUP = 10  # untimed inferences first: the first ones after a compile are slow
TIMED = 50  # at least this many timed inferences per variant


def commission_key(bundle: Bundle, device: str, min_agreement: float, core: ov.Core | None = None) -> CommissionKey:
    """The key of a commissioning of ``bundle`` on ``device`` (after a fallback to CPU, if any)."""
    core = core or ov.Core()
    device, _ = pick_device(core, device)
    ident = device_identity(core, device)
    m = bundle.manifest
    return CommissionKey(
        manifest_sha256=manifest_sha256(bundle),
        bundle=f"{m.name} v{m.version}",
        min_agreement=min_agreement,
        **ident,  # type: ignore[arg-type]
    )


def candidates(bundle: Bundle, device: str, core: ov.Core | None = None) -> tuple[list[RunVariant], dict[str, str]]:
    """Variants worth measuring on ``device``, and why each of the others is not."""
    caps, runnable = capabilities(core or ov.Core(), device), bundle.runnable()
    out, skipped = [], {}
    for run in RUN_VARIANTS.values():
        why = f"the bundle has no accepted {run.ir} IR" if run.ir not in runnable else run.offered_on(device, caps)
        if why is None:
            out.append(run)
        else:
            skipped[run.name] = why
    return out, skipped


def _golden(model: AnomalyModel) -> dict[str, float]:
    return {g.file: model.infer(frame).score for g, frame in golden_frames(model.bundle) if frame is not None}


def _score(model: AnomalyModel, batches: np.ndarray) -> tuple[np.ndarray, float]:
    """Scores of the tensors and the median time per inference (warm-up excluded)."""
    for i in range(WARMUP):
        model.infer_batch(batches[i % len(batches)][None])
    scores, times = [], []
    for i in range(max(len(batches), TIMED)):
        result = model.infer_batch(batches[i % len(batches)][None])
        times.append(result.latency_ms)
        if i < len(batches):
            scores.append(result.score)
    return np.array(scores), float(np.median(times))


def relative_drift(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-image relative change of ``scores`` against ``reference`` (guarded near zero)."""
    return np.abs(scores - reference) / np.maximum(np.abs(reference), 1e-12)


BORDERLINE = 1e-5  # relative distance of an FP32 score to the threshold below which its verdict is a coin toss


def judge_candidate(
    scores: np.ndarray, threshold: float, ref: AcceptanceSet, fp32_threshold: float, budget: float, min_agreement: float
) -> dict:
    """Agreement, AUROC drop and score drift of a variant's scores against the recorded FP32 scores.

    Images whose recorded FP32 score lies on the threshold (within :data:`BORDERLINE`, relative) are
    counted as ``borderline``, not as agreeing or disagreeing: the last bit of a float would decide them.
    """
    broken = int((~np.isfinite(scores)).sum())
    if broken:
        reason = f"scored NaN or infinity (not a number) on {broken} of {len(scores)} images; the model is broken"
        return {"accepted": False, "reasons": [f"{reason} - re-export the bundle"], "disagreements": broken}
    edge = np.abs(ref.fp32_scores - fp32_threshold) <= BORDERLINE * max(abs(fp32_threshold), 1e-12)
    same = (is_ng(scores, threshold) == is_ng(ref.fp32_scores, fp32_threshold))[~edge]
    variant_auroc, fp32_auroc = auroc(ref.labels, scores), auroc(ref.labels, ref.fp32_scores)
    drift = relative_drift(scores, ref.fp32_scores)
    measured = {
        "agreement": float(same.mean()) if len(same) else 1.0,
        "disagreements": int((~same).sum()),
        "borderline": int(edge.sum()),
        "auroc": variant_auroc,
        "auroc_drop": fp32_auroc - variant_auroc,
        "drift_max": float(drift.max()),
        "drift_mean": float(drift.mean()),
    }
    reasons = []
    if measured["agreement"] < min_agreement:
        reasons.append(
            f"{measured['disagreements']} of {len(same)} verdicts differ from FP32's "
            f"(agreement {measured['agreement']:.1%} < {min_agreement:.1%})"
        )
    if measured["auroc_drop"] > budget + 1e-12:
        reasons.append(f"AUROC {variant_auroc:.4f} is {measured['auroc_drop']:.4f} below FP32's (budget {budget:.4f})")
    return {**measured, "accepted": not reasons, "reasons": reasons}


def _measure(model: AnomalyModel, ref: AcceptanceSet, bundle: Bundle, min_agreement: float) -> CandidateResult:
    scores, p50 = _score(model, ref.batches)
    spec = bundle.manifest.acceptance
    assert spec is not None
    fp32_threshold = bundle.variant("fp32").threshold.value
    verdict = judge_candidate(scores, model.threshold, ref, fp32_threshold, spec.max_auroc_drop, min_agreement)
    return CandidateResult(**_identity(model), **verdict, p50_ms=p50)


def _identity(model: AnomalyModel) -> dict:
    return {
        "variant": model.variant_name,
        "ir": model.run_variant.ir,
        "precision": model.precision,
        "threshold": model.threshold,
        "golden": _golden(model),
    }


def _fp32_only(model: AnomalyModel) -> CandidateResult:
    """A bundle exported before acceptance sets: FP32 runs as exported (timed on its golden images)."""
    batches = [model.batch(frame)[0] for _, frame in golden_frames(model.bundle) if frame is not None]
    p50 = _score(model, np.stack(batches))[1] if batches else None
    return CandidateResult(**_identity(model), accepted=True, p50_ms=p50)


def _refused(run: RunVariant, bundle: Bundle, why: str) -> CandidateResult:
    ir = bundle.manifest.variants.get(run.ir)  # type: ignore[call-overload]
    return CandidateResult(
        variant=run.name, ir=run.ir, precision=run.precision, threshold=ir.threshold.value if ir else None,
        accepted=False, reasons=[why],
    )  # fmt: skip


def choose(results: dict[str, CandidateResult]) -> tuple[str | None, str]:
    """The variant ``auto`` runs and why: the fastest accepted one, FP32 unless another is clearly faster."""
    fp32 = results.get("fp32")
    if fp32 is None or not fp32.accepted:
        why = "; ".join(fp32.reasons) if fp32 else "no FP32 variant"
        return None, f"FP32 itself does not reproduce the export on this device ({why})"
    timed = [c for c in results.values() if c.accepted and c.p50_ms is not None and np.isfinite(c.p50_ms)]
    fastest = min(timed, key=lambda c: c.p50_ms or 0.0, default=fp32)
    refused = [f"{c.variant}: {'; '.join(c.reasons)}" for c in results.values() if not c.accepted]
    tail = f"; not run: {' | '.join(refused)}" if refused else ""
    if fastest.variant == "fp32" or fp32.p50_ms is None or not np.isfinite(fp32.p50_ms):
        ms = f" ({fp32.p50_ms:.2f} ms)" if fp32.p50_ms is not None else ""
        which = "the only accepted variant" if len(timed) <= 1 else "the fastest accepted variant"
        return "fp32", f"fp32 is {which}{ms}{tail}"
    if (fastest.p50_ms or 0.0) > GAIN * fp32.p50_ms:
        return "fp32", (
            f"{fastest.variant} ({fastest.p50_ms:.2f} ms) is less than {1 - GAIN:.0%} faster than fp32 "
            f"({fp32.p50_ms:.2f} ms){tail}"
        )
    return fastest.variant, (
        f"{fastest.variant} is the fastest accepted variant ({fastest.p50_ms:.2f} ms vs fp32 {fp32.p50_ms:.2f} ms, "
        f"agreement {fastest.agreement if fastest.agreement is not None else 1:.1%}){tail}"
    )


def commission(
    bundle: Bundle, device: str, min_agreement: float = 1.0, cache_dir: Path | None = None, context: str = ""
) -> CommissionRecord:
    """Measure every candidate variant of ``bundle`` on ``device`` and decide which ``auto`` runs.

    One compiled model at a time (peak memory of one model). Every variant of the run-variant table
    appears in the record: measured, or refused with the reason it was not tried. Nothing is
    written; see :func:`~edge_ad.commissioning.record.write_record`.

    Raises:
        ModelLoadError: FP32 cannot be compiled or run here at all (that error is the one to show).
        BundleError: The acceptance set is unreadable.
    """
    core = ov.Core()
    key = commission_key(bundle, device, min_agreement, core)
    runs, skipped = candidates(bundle, key.device, core)
    results: dict[str, CandidateResult] = {}
    ref: AcceptanceSet | None = None
    for run in runs:
        if run.name != "fp32" and ref is None:
            why = "the bundle has no acceptance set (exported before commissioning); re-export to prove it"
            results[run.name] = _refused(run, bundle, why)
            continue
        try:
            model = AnomalyModel(bundle, run.name, key.device, cache_dir)
            if run.name == "fp32":  # read once the IR is known to fit the manifest (its error says more)
                ref = read_acceptance(bundle)
            results[run.name] = _fp32_only(model) if ref is None else _measure(model, ref, bundle, min_agreement)
        except (EdgeAdError, RuntimeError) as exc:
            if run.name == "fp32":  # the bundle cannot run here at all
                if isinstance(exc, EdgeAdError):
                    raise
                raise ModelLoadError(f"{bundle.path}: FP32 fails on {key.device} ({first_line(exc)})") from None
            results[run.name] = _refused(run, bundle, first_line(exc))
            continue
        finally:
            model = None  # one compiled model at a time
        _log(key, results[run.name])
    results.update({name: _refused(RUN_VARIANTS[name], bundle, why) for name, why in skipped.items()})
    chosen, reason = choose(results)
    summary = None
    if ref is not None and bundle.manifest.acceptance is not None:
        spec = bundle.manifest.acceptance
        summary = {
            "images": spec.images,
            "good": spec.good,
            "defects": spec.defects,
            "fp32_auroc": auroc(ref.labels, ref.fp32_scores),
            "max_auroc_drop": spec.max_auroc_drop,
        }
    return CommissionRecord(
        key=key,
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        context=context,
        plugin_default_precision=plugin_default_precision(core, key.device),
        acceptance=summary,
        candidates=results,
        chosen=chosen,
        reason=reason,
    )


def _log(key: CommissionKey, r: CandidateResult) -> None:
    logger.info(
        "commissioning %s on %s: %s (%s) %s, agreement %s, AUROC drop %s, p50 %s ms",
        key.bundle,
        key.device,
        r.variant,
        r.precision,
        "accepted" if r.accepted else "REFUSED " + "; ".join(r.reasons),
        "-" if r.agreement is None else f"{r.agreement:.1%}",
        "-" if r.auroc_drop is None else f"{r.auroc_drop:+.4f}",
        "-" if r.p50_ms is None else f"{r.p50_ms:.2f}",
    )
