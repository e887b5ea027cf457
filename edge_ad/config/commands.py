"""Station commands over MQTT: the shared secret that signs them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["CommandsConfig"]


class CommandsConfig(EdgeAdModel):
    """How the station authorises commands (``cmd/...``): an HMAC-SHA256 key it shares with the senders.

    The broker's ACLs on ``<prefix>/<station>/cmd/#`` are the second layer; the station checks the
    signature, the timestamp and the nonce of every command itself.
    """

    secret_file: Path | None = Field(
        None,
        description=(
            "File holding the command key (first line, at least 32 characters; e.g. `openssl rand -hex 32`). "
            "A relative path is looked up in $CREDENTIALS_DIRECTORY when systemd provides one "
            "(LoadCredential=), else next to this config file."
        ),
    )
    secret_env: str | None = Field(None, description="Environment variable holding the command key. Never logged.")
    max_age_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="A command's timestamp may differ from the station's clock by at most this (replay window).",
    )

    @model_validator(mode="after")
    def _one_secret_source(self) -> CommandsConfig:
        if self.secret_file is not None and self.secret_env is not None:
            raise ValueError("give secret_file or secret_env, not both")
        return self

    @property
    def has_secret(self) -> bool:
        """Whether a key source is configured."""
        return self.secret_file is not None or self.secret_env is not None
