"""Model bundles: manifest schema, verification and atomic installation."""

from edge_ad.bundle.manifest import (
    MANIFEST_NAME,
    FileEntry,
    GoldenImage,
    InputSpec,
    Manifest,
    ModelSpec,
    Threshold,
    Variant,
)
from edge_ad.bundle.store import Bundle, activate, file_entry, install_bundle, list_versions, load_bundle

__all__ = [
    "MANIFEST_NAME",
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
]
