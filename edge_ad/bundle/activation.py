"""Changing which installed version a station judges with: checked activation and the rollback rule.

The one home of both for every caller (``edge-ad models activate|rollback``, the console): a version is made
active only after every file was verified and, with trusted keys, its signature checked as the station will.
"""

from __future__ import annotations

from pathlib import Path

from edge_ad.bundle.store import activate, active_version, list_versions, load_bundle
from edge_ad.bundle.trust import Trust
from edge_ad.errors import BundleError

__all__ = ["activate_checked", "rollback_target"]


def activate_checked(model_dir: Path, version: str, trust: Trust | None) -> None:
    """Verify ``version`` (file hashes, then the signature when ``trust`` is given) and make it the active one.

    Raises:
        BundleError: Not an installed version of ``model_dir`` (never a path), a changed file or a refused
            signature; nothing was changed.
    """
    if version not in {p.name for p in list_versions(model_dir)}:
        raise BundleError(f"{model_dir}: no installed version {version!r}")
    bundle = load_bundle(model_dir / version)
    if trust is not None:
        trust.check(bundle)
    activate(model_dir, version)


def rollback_target(model_dir: Path) -> tuple[str, str]:
    """(active version, the version a rollback goes to): its parent when installed, else the next older one.

    Raises:
        BundleError: No active version, or nothing older.
    """
    active = active_version(model_dir)
    if active is None:
        raise BundleError(f"{model_dir}: no active version to roll back from; use 'edge-ad models activate VERSION'")
    parent = load_bundle(model_dir / active, verify=False).manifest.parent
    older = [p.name for p in list_versions(model_dir) if int(p.name) < int(active)]
    target = parent if parent and (model_dir / parent).is_dir() else (older[-1] if older else None)
    if target is None:
        raise BundleError(f"{model_dir}: v{active} has no earlier version to roll back to")
    return active, target
