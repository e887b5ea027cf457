"""Which variant (IR and precision) a station runs, decided once per bundle version and device."""

from edge_ad.commissioning.measure import GAIN, choose, commission, commission_key
from edge_ad.commissioning.record import CandidateResult, CommissionKey, CommissionRecord, read_record, write_record
from edge_ad.commissioning.resolve import Resolution, current_record, decide, load_model, resolve_variant

__all__ = [
    "GAIN",
    "CandidateResult",
    "CommissionKey",
    "CommissionRecord",
    "Resolution",
    "choose",
    "commission",
    "commission_key",
    "current_record",
    "decide",
    "load_model",
    "read_record",
    "resolve_variant",
    "write_record",
]
