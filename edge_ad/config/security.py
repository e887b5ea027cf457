"""Which model bundles a station trusts: signature keys, the station's own key, the oldest version allowed."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_ad.config.base import EdgeAdModel

__all__ = ["SecurityConfig"]


class SecurityConfig(EdgeAdModel):
    """Signed bundles: nobody with write access to the models folder can change what the station judges."""

    trusted_keys: list[Path] = Field(
        default_factory=list,
        description=(
            "Public keys (PEM, from 'edge-ad keys new') whose signatures of a bundle's manifest.sig the station "
            "accepts. Two keys at once during a key rotation."
        ),
    )
    require_signature: bool | None = Field(
        None,
        description=(
            "Refuse unsigned bundles. Default: true when trusted_keys is set, false otherwise (then the station "
            "runs unsigned bundles and says 'bundles not signed')."
        ),
    )
    station_key: Path | None = Field(
        None,
        description=(
            "This station's private key (install-service creates it, readable only by the service user): it "
            "signs the versions recalibration writes. A station-signed version is accepted only when its IRs "
            "are those of a version signed by a trusted key."
        ),
    )
    min_version: int | None = Field(
        None, ge=1, description="Refuse bundle versions older than this (an old signed version copied back)."
    )

    @property
    def requires_signature(self) -> bool:
        """Whether an unsigned bundle is refused."""
        return bool(self.trusted_keys) if self.require_signature is None else self.require_signature
