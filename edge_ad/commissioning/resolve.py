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

__all__ = ["Resolution", "current_record", "load_model", "resolve_variant"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    """Which variant runs, the record behind the decision, and why the configured one does not (or None)."""

    variant: str
    record: CommissionRecord | None
    note: str | None = None


def current_record(bundle: Bundle, config: ModelConfig, state_dir: Path) -> CommissionRecord | None:
    """The stored record of ``bundle`` if it is still valid on this device, else None (read-only)."""
    record = read_record(state_dir, bundle)
    if record is None or record.key != commission_key(bundle, config.device, config.min_agreement):
        return None
    return record


def _decide(record: CommissionRecord, wanted: str) -> Resolution:
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
    why = "; ".join(result.reasons) if result is not None else f"not available here ({record.reason})"
    return Resolution("fp32", record, f"model.variant {wanted} refused by commissioning ({why}); running fp32")


def resolve_variant(
    bundle: Bundle,
    config: ModelConfig,
    state_dir: Path | None,
    *,
    commission_missing: bool = True,
    force: bool = False,
    cache_dir: Path | None = None,
) -> Resolution:
    """The variant this station runs for ``bundle``, commissioning it first where needed.

    Args:
        bundle: The verified bundle.
        config: The ``model`` section (variant, device, min_agreement).
        state_dir: Where commissioning records live; None measures without keeping a record.
        commission_missing: Measure when no valid record exists (the daemon, recalibrate, bench).
            Read-only commands pass False and get the configured variant (``auto``: fp32) meanwhile.
        force: Commission again even if a valid record exists (``edge-ad models commission``).
        cache_dir: OpenVINO compile cache used while measuring.

    Raises:
        ModelLoadError: Even FP32 does not reproduce the export on this device.
    """
    record = None if force or state_dir is None else current_record(bundle, config, state_dir)
    if record is None:
        if not commission_missing:
            wanted = "fp32" if config.variant == "auto" else config.variant
            return Resolution(wanted, None, f"{bundle.manifest.name} v{bundle.manifest.version} not commissioned here")
        logger.info("commissioning %s v%s on %s", bundle.manifest.name, bundle.manifest.version, config.device)
        record = commission(bundle, config.device, config.min_agreement, cache_dir)
        if state_dir is not None:
            write_record(state_dir, record)
        logger.info("commissioned: auto runs %s (%s)", record.chosen, record.reason)
    return _decide(record, config.variant)


def load_model(
    bundle: Bundle, config: ModelConfig, state_dir: Path, cache_dir: Path | None = None, streams: int | None = None
) -> AnomalyModel:
    """Compile the variant :func:`resolve_variant` names, with its commissioning attached.

    ``model.commissioning`` is the decision's summary (for the status topic) and ``model.variant_note``
    says why a configured variant does not run. Reduced precisions self-test against the golden scores
    measured at commissioning on this device; f32 variants against the export's.
    """
    resolution = resolve_variant(bundle, config, state_dir, cache_dir=cache_dir)
    model = AnomalyModel(bundle, resolution.variant, config.device, cache_dir, streams or config.infer_requests)
    record = resolution.record
    if record is not None:
        model.commissioning = record.summary()
        if RUN_VARIANTS[resolution.variant].reduced:
            model.reference_scores = record.candidates[resolution.variant].golden
    model.variant_note = resolution.note
    if resolution.note:
        logger.warning("%s", resolution.note)
    return model
