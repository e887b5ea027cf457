"""Model bundles: manifest schema, verification, acceptance set and atomic installation."""

from edge_ad.bundle.acceptance import AcceptanceSet, pick_acceptance, read_acceptance
from edge_ad.bundle.manifest import (
    ACCEPTANCE_FILE,
    MANIFEST_NAME,
    AcceptanceSpec,
    FileEntry,
    GoldenImage,
    InputSpec,
    Manifest,
    ModelSpec,
    Threshold,
    Variant,
)
from edge_ad.bundle.store import (
    Bundle,
    activate,
    file_entry,
    install_bundle,
    list_versions,
    load_bundle,
    next_version,
)

__all__ = [
    "ACCEPTANCE_FILE",
    "MANIFEST_NAME",
    "AcceptanceSet",
    "AcceptanceSpec",
    "Bundle",
    "FileEntry",
    "GoldenImage",
    "InputSpec",
    "Manifest",
    "ModelSpec",
    "Threshold",
    "Variant",
    "activate",
    "file_entry",
    "install_bundle",
    "list_versions",
    "load_bundle",
    "next_version",
    "pick_acceptance",
    "read_acceptance",
]
