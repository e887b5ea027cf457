"""The station's bundle store as the console shows and changes it, through the functions ``edge-ad models`` calls."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_ad.bundle.activation import activate_checked, rollback_target
from edge_ad.bundle.store import MANIFEST_NAME, active_version, list_versions, load_bundle
from edge_ad.bundle.trust import Trust
from edge_ad.config import EdgeAdConfig
from edge_ad.errors import BundleError, EdgeAdError

__all__ = ["VersionRow", "activate_version", "model_dir", "rollback", "version_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionRow:
    """One installed version as the models page lists it."""

    version: str
    active: bool
    created: str = ""
    kind: str = ""
    variant: str = ""
    threshold: float | None = None
    auroc: float | None = None
    note: str = ""
    trust: str = ""
    broken: str = ""


def model_dir(config: EdgeAdConfig) -> Path:
    """The model directory of ``model.path`` (a version directory names its parent), as the CLI resolves it.

    Raises:
        BundleError: No such directory.
    """
    path = config.model.path
    if (path / MANIFEST_NAME).is_file():
        path = path.parent
    if not path.is_dir():
        raise BundleError(f"{path}: no such model directory; check model.path")
    return path


def _trust_line(path: Path, trust: Trust) -> str:
    try:
        return trust.check(load_bundle(path)).describe()
    except EdgeAdError as exc:
        return f"REFUSED: {str(exc).removeprefix(str(path)).lstrip(': /')}"


def version_rows(config: EdgeAdConfig) -> list[VersionRow]:
    """Every installed version, oldest first, with what ``edge-ad models list`` shows (hashes and trust verified)."""
    folder = model_dir(config)
    active = active_version(folder)
    trust = Trust.from_config(config.security)
    rows = []
    for path in list_versions(folder):
        try:
            m = load_bundle(path, verify=False).manifest
            variant = m.variants[m.default_variant]
            note = f"recalibrated from v{m.parent}" if m.parent else "exported"
            rows.append(
                VersionRow(
                    version=path.name,
                    active=path.name == active,
                    created=m.created,
                    kind=m.model.type,
                    variant=m.default_variant,
                    threshold=variant.threshold.value,
                    auroc=variant.metrics.get("image_auroc"),
                    note=note,
                    trust=_trust_line(path, trust),
                )
            )
        except EdgeAdError as exc:
            rows.append(VersionRow(version=path.name, active=path.name == active, broken=str(exc)))
    return rows


def activate_version(config: EdgeAdConfig, version: str, user: str) -> str:
    """Verify ``version`` (hashes, then signature as the station will) and make it the active one.

    Returns:
        A one-line message for the technician.

    Raises:
        BundleError: Unknown version, a changed file or a refused signature; nothing was changed.
    """
    folder = model_dir(config)
    before = active_version(folder)
    activate_checked(folder, version, Trust.from_config(config.security))
    logger.warning("console: %s activated v%s (was v%s) in %s", user, version, before, folder)
    return f"active -> v{version}; a running daemon switches within seconds"


def rollback(config: EdgeAdConfig, expected_target: str, user: str) -> str:
    """Roll back to ``expected_target`` if that is still where a rollback goes (the page may be old).

    Raises:
        BundleError: The target changed since the confirmation, or it does not verify; nothing was changed.
    """
    active, target = rollback_target(model_dir(config))
    if target != expected_target:
        raise BundleError(f"the active version changed meanwhile (now v{active}); nothing was done, look again")
    return activate_version(config, target, user).replace("active ->", f"rolled back v{active} ->")
