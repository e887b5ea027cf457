"""Which bundle versions a station may judge with: signatures, the recalibration chain, the oldest version.

A version is trusted when its ``manifest.sig`` verifies with one of ``security.trusted_keys`` (a
workstation signed it at export), or with the station's own key (it recalibrated it) *and* every
file other than the ones recalibration writes is byte-identical to its parent's, which must be
trusted in turn. Recalibration may change only the thresholds, the memory bank and the acceptance
set's scores (and the scoring IR a memory-bank refit composes from the parent's feature IR and
the new bank), so a station key that leaks cannot bring in a foreign network. It also writes its
own report (an HTML file nothing loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_ad.bundle.manifest import RECALIBRATION_REPORT, SIGNATURE_NAME, Manifest, recalibration_root
from edge_ad.bundle.signing import (
    Signature,
    key_id,
    load_private_key,
    load_public_key,
    read_signature,
    signature_valid,
)
from edge_ad.bundle.store import Bundle, load_bundle, load_private
from edge_ad.config import SecurityConfig
from edge_ad.errors import BundleError

__all__ = ["RECALIBRATED_FILES", "Trust", "Verdict"]

# files a station-signed version may change relative to its parent
RECALIBRATED_FILES = frozenset({"memory_bank.npy", "acceptance.npz", RECALIBRATION_REPORT})
MAX_CHAIN = 100


@dataclass(frozen=True)
class Verdict:
    """How a version is trusted, for status and ``models list``: signer, key id, the chain to a trusted key."""

    signed: bool
    signer: str = ""
    key_id: str = ""
    chain: tuple[str, ...] = ()  # versions from this one up to the trusted-key-signed ancestor

    def describe(self) -> str:
        """One line, e.g. ``signed by export (key 3f2a…)`` or ``not signed``."""
        if not self.signed:
            return "not signed"
        via = f" via v{' <- v'.join(self.chain[1:])}" if len(self.chain) > 1 else ""
        return f"signed by {self.signer} (key {self.key_id}){via}"


@dataclass(frozen=True)
class Trust:
    """The station's trust policy, loaded from the ``security`` section.

    Args:
        keys: Trusted workstation keys by key id.
        station: The station's own key pair, if it has one (signs and verifies its recalibrations).
        require: Refuse unsigned versions.
        min_version: Refuse versions below this number.
        copies: Where parents are copied before their files are compared (:func:`load_private`); None
            reads them in place (command-line tools).
    """

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    station: Ed25519PrivateKey | None = None
    require: bool = False
    min_version: int | None = None
    copies: Path | None = None

    @classmethod
    def from_config(cls, security: SecurityConfig, copies: Path | None = None) -> Trust:
        """Load the keys the config names (``copies``: see the class).

        Raises:
            ConfigError: A key file is unreadable or not an Ed25519 key.
        """
        keys = {}
        for i, path in enumerate(security.trusted_keys):
            public = load_public_key(path, f"security.trusted_keys[{i}]")
            keys[key_id(public)] = public
        station = load_private_key(security.station_key, "security.station_key") if security.station_key else None
        return cls(keys, station, security.requires_signature, security.min_version, copies)

    @property
    def station_key_id(self) -> str | None:
        """The id of the station's own key (None without one)."""
        return key_id(self.station.public_key()) if self.station is not None else None

    def check(self, bundle: Bundle) -> Verdict:
        """How ``bundle`` (hashes already verified) is trusted.

        Raises:
            BundleError: One line naming the version and the key: unsigned while required, a bad
                signature, an unknown key, a station-signed version whose IRs are not its parent's,
                or a version below ``min_version``.
        """
        return self._check(bundle, depth=0)

    def _check(self, bundle: Bundle, depth: int) -> Verdict:
        where = bundle.source / SIGNATURE_NAME
        version = bundle.manifest.version
        if self.min_version is not None and int(version) < self.min_version:
            raise BundleError(
                f"{bundle.source}: version {version} is older than security.min_version {self.min_version} "
                "(an old version copied back?); activate a newer one"
            )
        signature = read_signature(bundle.path)
        if signature is None:
            if self.require:
                raise BundleError(
                    f"{where}: missing: version {version} is not signed and security.require_signature is on; "
                    "copy the signed bundle from the workstation (edge-ad export --sign-key)"
                )
            return Verdict(signed=False)
        public = self.keys.get(signature.key_id)
        station = self.station.public_key() if self.station is not None else None
        if public is None and station is not None and signature.key_id == key_id(station):
            public = station
        if public is None:
            if not self.keys and not self.require:
                return Verdict(signed=False)  # nothing to verify with: the station runs as without signatures
            raise BundleError(
                f"{where}: signed by key {signature.key_id} ({signature.signer}), which is not in "
                "security.trusted_keys; add its public key there, or copy a bundle signed by a trusted key"
            )
        if not signature_valid(bundle.raw, signature, public):
            raise BundleError(
                f"{where}: the signature by key {signature.key_id} does not match manifest.json (changed after "
                "signing); copy the bundle again from the workstation"
            )
        source = bundle.source
        if (bundle.manifest.name, version) != (source.parent.name, source.name):
            raise BundleError(
                f"{source}: its signed manifest names {bundle.manifest.name} v{version}, not this folder "
                f"({source.parent.name}/{source.name}): a signed bundle of another model or version was copied here"
            )
        if public is not station:
            return Verdict(True, signature.signer, signature.key_id, (version,))
        parent = self._parent(bundle, signature, depth)
        return Verdict(True, signature.signer, signature.key_id, (version, *parent.chain))

    def _parent(self, bundle: Bundle, signature: Signature, depth: int) -> Verdict:
        """The trust of a station-signed version's root, once it changed only what recalibration may change.

        The root is the version a trusted key signed that it was recalibrated from. It is compared with
        the root rather than step by step, so the versions in between may be pruned.
        """
        m = bundle.manifest
        root_version = recalibration_root(m)
        if root_version is None or depth >= MAX_CHAIN:
            raise BundleError(
                f"{bundle.source / SIGNATURE_NAME}: signed by this station's key {signature.key_id} but not "
                "recalibrated from a version (no parent); only recalibrations are station-signed"
            )
        where = bundle.source.parent / root_version
        root = load_private(where, self.copies) if self.copies is not None else load_bundle(where)
        verdict = self._check(root, depth + 1)
        if not verdict.signed or (root.manifest.parent is not None and len(verdict.chain) > 1):
            raise BundleError(f"{bundle.source}: recalibrated from v{root_version}, which no trusted key signed")
        differing = {
            name
            for name in set(m.files) | set(root.manifest.files)
            if name not in RECALIBRATED_FILES and m.files.get(name) != root.manifest.files.get(name)
        }
        if differing:
            differing -= _recomposed(bundle, root, differing)
        changed = _changed_settings(m, root.manifest) + sorted(differing)
        if changed:
            raise BundleError(
                f"{bundle.source}: station-signed version differs from v{root_version} (signed by {verdict.signer}) "
                f"in {', '.join(changed)}; a recalibration may change only thresholds and the memory bank"
            )
        return Verdict(verdict.signed, verdict.signer, verdict.key_id, (*_chain(m), root_version))


def _chain(manifest: Manifest) -> tuple[str, ...]:
    """The versions between a recalibrated version and its root, nearest first (for the description)."""
    root = recalibration_root(manifest)
    return (manifest.parent,) if manifest.parent and manifest.parent != root else ()


# what a recalibration writes into the manifest; every other setting must be the root's
_RECALIBRATED = {"version", "created", "parent", "recalibration", "files", "golden", "outputs", "variants"}


def _changed_settings(child: Manifest, root: Manifest) -> list[str]:
    """Settings of ``child`` that are not ``root``'s, beyond thresholds, metrics, golden scores and files."""
    a, b = child.model_dump(mode="json"), root.model_dump(mode="json")
    changed = [key for key in sorted((set(a) | set(b)) - _RECALIBRATED) if a.get(key) != b.get(key)]
    for name in set(a["variants"]) | set(b["variants"]):
        mine, theirs = a["variants"].get(name, {}), b["variants"].get(name, {})
        for key in sorted((set(mine) | set(theirs)) - {"threshold", "metrics"}):
            if mine.get(key) != theirs.get(key):
                changed.append(f"variants.{name}.{key}")
    if [g["file"] for g in a["golden"]] != [g["file"] for g in b["golden"]]:
        changed.append("golden")
    extra_outputs = {k: v for k, v in a["outputs"].items() if b["outputs"].get(k) != v}
    if set(extra_outputs) - {"embedding"}:  # a memory-bank refit adds the embedding output
        changed.append("outputs")
    return changed


def _recomposed(bundle: Bundle, parent: Bundle, names: set[str]) -> set[str]:
    """Those of ``names`` that are scoring IRs a memory-bank refit composed from the parent's features and the new bank.

    Each IR is rebuilt here from the parent's feature IR and this version's memory bank and compared byte for byte.
    """
    from edge_ad.inference.patchcore_graph import recomposed_files  # OpenVINO only when a refit is checked

    return recomposed_files(bundle, parent, names)
