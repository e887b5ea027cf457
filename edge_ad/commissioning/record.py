"""The commissioning record: what was measured on this device for one bundle version, and the decision.

Kept in ``<state_dir>/commissioning/<manifest sha256>-<device>.json``. A restart reuses it as long as its key
(bundle, device, CPU flags, OpenVINO version, acceptance criterion) is unchanged, so the variant a
station runs never flips between restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_ad.bundle import MANIFEST_NAME, Bundle, file_entry
from edge_ad.bundle.store import fsync_dir
from edge_ad.errors import ConfigError
from edge_ad.integrity import mac, mac_matches, station_mac_key

__all__ = [
    "CandidateResult",
    "CommissionKey",
    "CommissionRecord",
    "manifest_sha256",
    "read_record",
    "record_path",
    "write_record",
]

logger = logging.getLogger(__name__)

RECORDS_DIR = "commissioning"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class CommissionKey(_Strict):
    """What a decision depends on; any change means commissioning again."""

    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bundle: str = Field(description="name v<version>, for people")
    device: str
    device_name: str
    cpu_flags: list[str]
    openvino: str
    min_agreement: float


class CandidateResult(_Strict):
    """One variant scored on the acceptance set on this device."""

    variant: str
    ir: str
    precision: str = Field(description="INFERENCE_PRECISION_HINT read back from the compiled model")
    threshold: float | None = Field(description="The threshold it judges with (None: the bundle lacks its IR).")
    accepted: bool
    reasons: list[str] = Field(default_factory=list, description="Why it was refused (empty when accepted).")
    agreement: float | None = Field(None, description="Share of acceptance-set verdicts equal to FP32's.")
    disagreements: int | None = None
    borderline: int | None = Field(
        None, description="Images whose FP32 score lies on the threshold (within 1e-5): not counted either way."
    )
    auroc: float | None = None
    auroc_drop: float | None = Field(None, description="FP32's AUROC on the set minus this variant's.")
    drift_max: float | None = Field(None, description="Largest relative score change vs the FP32 scores.")
    drift_mean: float | None = None
    p50_ms: float | None = Field(None, description="Median time per image (inference, no resize).")
    golden: dict[str, float] = Field(default_factory=dict, description="Scores of the golden images.")


class CommissionRecord(_Strict):
    """``<state_dir>/commissioning/<sha256>-<device>.json``."""

    format: Literal[1] = 1
    key: CommissionKey
    at: str
    context: str = Field(
        "", description="Who measured: first start, hot reload (timed while serving frames), command, bench."
    )
    plugin_default_precision: str = Field(description="What the plugin would have run float layers in.")
    acceptance: dict[str, float | int | str] | None = Field(None, description="Set size, FP32 AUROC, budget.")
    candidates: dict[str, CandidateResult]
    chosen: str | None = Field(description="The variant 'auto' runs; None when even FP32 was refused.")
    reason: str

    def summary(self) -> dict:
        """The decision as published on the status topic."""
        return {
            "at": self.at,
            "context": self.context,
            "chosen": self.chosen,
            "reason": self.reason,
            "cpu_flags": self.key.cpu_flags,
            "plugin_default_precision": self.plugin_default_precision,
            "candidates": {
                name: {
                    "precision": c.precision,
                    "accepted": c.accepted,
                    "agreement": c.agreement,
                    "auroc_drop": c.auroc_drop,
                    "drift_max": c.drift_max,
                    "p50_ms": c.p50_ms,
                }
                for name, c in self.candidates.items()
            },
        }


def manifest_sha256(bundle: Bundle) -> str:
    """sha256 of the bundle's manifest (which holds the sha256 of every other file)."""
    if bundle.raw:  # the bytes that were verified and parsed, not a second read of the file
        return hashlib.sha256(bundle.raw).hexdigest()
    return file_entry(bundle.path / MANIFEST_NAME).sha256


def record_path(state_dir: Path, sha256: str, device: str) -> Path:
    """Where the record of the bundle with this manifest sha256 on ``device`` lives."""
    return state_dir / RECORDS_DIR / f"{sha256}-{device}.json"


def read_record(state_dir: Path, bundle: Bundle, device: str = "CPU") -> CommissionRecord | None:
    """The stored record of this bundle version on ``device`` (whatever its key), or None.

    A missing or damaged file counts as none (commissioning then measures again).

    Raises:
        ConfigError: The record exists but this user may not read it.
    """
    path = record_path(state_dir, manifest_sha256(bundle), device)
    try:
        data = path.read_bytes()
        tag = path.with_name(path.name + ".mac").read_text().strip() if station_mac_key() else None
        if not mac_matches(data, tag):
            logger.warning("%s: not written by this station (MAC); commissioning measures again", path)
            return None
        return CommissionRecord.model_validate_json(data)
    except PermissionError:
        raise ConfigError(f"{path}: not readable by this user; run the command as the station's service user") from None
    except (OSError, ValidationError, ValueError):
        return None


def write_record(state_dir: Path, record: CommissionRecord) -> Path:
    """Store atomically (a reader never sees half a record), readable by every local user."""
    path = record_path(state_dir, record.key.manifest_sha256, record.key.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.model_dump(mode="json"), indent=1) + "\n"
    tag = mac(text.encode())
    if tag is not None:  # before the record: a record never appears without its MAC
        mac_path = path.with_name(path.name + ".mac")
        mac_path.with_name(mac_path.name + ".part").write_text(tag + "\n")
        os.replace(mac_path.with_name(mac_path.name + ".part"), mac_path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".record-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fchmod(fh.fileno(), 0o644)
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path
