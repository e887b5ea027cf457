"""The one place that says which variant a station runs: every command asks :func:`resolve_variant`.

``model.variant: auto`` runs what commissioning chose on this device; an explicit variant runs only
if commissioning accepted it here (else FP32, with a note that the status topic carries as an alarm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_ad.bundle import Bundle
from edge_ad.commissioning.measure import commission, commission_key
from edge_ad.commissioning.record import CommissionRecord, read_record, write_record
from edge_ad.config import ModelConfig
from edge_ad.errors import ModelLoadError
from edge_ad.inference.engine import AnomalyModel
from edge_ad.inference.precision import RUN_VARIANTS

__all__ = ["Resolution", "compile_cache", "current_record", "decide", "load_model", "resolve_variant"]

logger = logging.getLogger(__name__)


def compile_cache(state_dir: Path) -> Path:
    """OpenVINO's compiled-blob cache of a station."""
    return state_dir / "ov_cache"


@dataclass(frozen=True)
class Resolution:
    """Which variant runs, the record behind the decision, and why the configured one does not (or None)."""

    variant: str
    record: CommissionRecord | None
    note: str | None = None


def current_record(bundle: Bundle, config: ModelConfig, state_dir: Path) -> CommissionRecord | None:
    """The stored record of ``bundle`` if it is still valid on this device, else None (read-only)."""
    key = commission_key(bundle, config.device, config.min_agreement)
    record = read_record(state_dir, bundle, key.device)
    return record if record is not None and record.key == key else None


def decide(record: CommissionRecord, wanted: str) -> Resolution:
    """What runs for ``model.variant`` = ``wanted`` under this record (FP32, with a note, for a refused one)."""
    if record.chosen is None:
        raise ModelLoadError(
            f"commissioning {record.key.bundle} on {record.key.device}: {record.reason}; "
            "the device computes differently from the export machine - try model.device: CPU or re-export"
        )
    if wanted == "auto":
        return Resolution(record.chosen, record)
    result = record.candidates.get(wanted)
    if result is not None and result.accepted:
        return Resolution(wanted, record)
    why = "; ".join(result.reasons) if result is not None else "not measured"
    return Resolution("fp32", record, f"model.variant {wanted} refused by commissioning ({why}); running fp32")


def resolve_variant(
    bundle: Bundle,
    config: ModelConfig,
    state_dir: Path | None,
    *,
    commission_missing: bool = True,
    force: bool = False,
    context: str = "first start",
) -> Resolution:
    """The variant this station runs for ``bundle``, commissioning it first where needed.

    Args:
        bundle: The verified bundle.
        config: The ``model`` section (variant, device, min_agreement).
        state_dir: Where commissioning records (and the compile cache) live; None measures without
            keeping a record (bench).
        commission_missing: Measure when no valid record exists (the daemon, recalibrate, bench).
            Read-only commands pass False and get fp32, with a note, until the station commissioned.
        force: Commission again even if a valid record exists (``edge-ad models commission``).
        context: Recorded with a new measurement (first start, hot reload, command...).

    Raises:
        ModelLoadError: Even FP32 does not reproduce the export on this device.
    """
    record = None if force or state_dir is None else current_record(bundle, config, state_dir)
    if record is None:
        m = bundle.manifest
        if not commission_missing:
            return Resolution("fp32", None, f"{m.name} v{m.version} not commissioned on this device yet")
        logger.info("commissioning %s v%s on %s (%s)", m.name, m.version, config.device, context)
        cache = compile_cache(state_dir) if state_dir is not None else None
        record = commission(bundle, config.device, config.min_agreement, cache, context)
        if state_dir is not None:
            try:
                write_record(state_dir, record)
            except OSError as exc:  # the decision still holds for this process; the next start measures again
                logger.warning("commissioning record not written to %s (%s)", state_dir, exc.strerror or exc)
        logger.info("commissioned: auto runs %s (%s)", record.chosen, record.reason)
    return decide(record, config.variant)


def load_model(
    bundle: Bundle, config: ModelConfig, state_dir: Path, streams: int | None = None, context: str = "first start"
) -> AnomalyModel:
    """Compile the variant :func:`resolve_variant` names, with its commissioning attached.

    ``model.commissioning`` is the decision's summary (for the status topic) and ``model.variant_note``
    says why a configured variant does not run. Reduced precisions self-test against the golden scores
    measured at commissioning on this device; f32 variants against the export's.
    """
    resolution = resolve_variant(bundle, config, state_dir, context=context)
    model = AnomalyModel(
        bundle, resolution.variant, config.device, compile_cache(state_dir), streams or config.infer_requests
    )
    record = resolution.record
    if record is not None:
        model.commissioning = record.summary()
        if RUN_VARIANTS[resolution.variant].reduced:
            model.reference_scores = record.candidates[resolution.variant].golden
    model.variant_note = resolution.note
    if resolution.note:
        logger.warning("%s", resolution.note)
    return model
