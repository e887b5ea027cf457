"""Fleet section: whether a station takes install offers and rollbacks over MQTT (cmd/install, cmd/rollback)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["FleetConfig"]

# scheme, host (and port), then the slash that ends the host: "http://files" would also match "http://files.evil"
URL_PREFIX = re.compile(r"^https?://[^/\s@?#]+/\S*$")


class FleetConfig(EdgeAdModel):
    """A station in a plant: signed bundle versions offered by ``edge-ad fleet rollout`` (docs/remote-install.md)."""

    accept_installs: bool = Field(
        False,
        description=(
            "Accept <prefix>/<station>/cmd/install (download, verify, commission and activate a signed bundle "
            "version) and cmd/rollback. Needs commands.secret_file or secret_env, mqtt.username (a broker that "
            "authenticates its users), security.trusted_keys and url_prefixes."
        ),
    )
    url_prefixes: list[str] = Field(
        default_factory=list,
        description=(
            "The only places packages are downloaded from: an offer whose url does not start with one of these is "
            "refused. Each is http(s)://host[:port]/ followed by an optional path, e.g. "
            "https://files.plant.local/bundles/. Empty: accept_installs is a config error."
        ),
    )
    max_package_mb: float = Field(
        2048,
        gt=0,
        description="Largest package a station downloads: a bigger offer is refused, a longer download stops.",
    )
    download_timeout_s: float = Field(
        300, gt=0, le=86400, description="Seconds a download may take in all (and may stall for, per read)."
    )
    ca_file: Path | None = Field(
        None,
        description=(
            "PEM file of the CA that signed the file server's certificate (a plant CA); default: the system's CAs. "
            "HTTPS certificates and host names are always verified."
        ),
    )

    @field_validator("url_prefixes")
    @classmethod
    def _prefixes_name_a_host(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not URL_PREFIX.match(prefix):
                raise ValueError(
                    f"{prefix!r} is not http(s)://host[:port]/[path]: it must end its host with a slash "
                    "(else http://files would also allow http://files.example.com)"
                )
            if any(part in ("..", ".") for part in prefix.split("/")[3:]):
                raise ValueError(f"{prefix!r}: no '.' or '..' path segments")
        return prefixes
