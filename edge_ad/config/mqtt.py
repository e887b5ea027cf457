"""MQTT broker section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["MqttConfig", "TlsConfig"]


class TlsConfig(EdgeAdModel):
    """TLS to the broker (server verified against ``ca``; client certificate optional)."""

    ca: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert: Path | None = Field(None, description="Client certificate (PEM) for brokers that require one.")
    key: Path | None = Field(None, description="Private key (PEM) of the client certificate.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        return self


class MqttConfig(EdgeAdModel):
    """Broker connection and topic prefix."""

    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    prefix: str = Field(
        "edge_ad",
        pattern=r"^[^#+/\x00-\x1f][^#+\x00-\x1f]*$",
        description="First topic level: <prefix>/<station>/... (no MQTT wildcards, no control characters).",
    )
    client_id: str | None = Field(None, description="MQTT client id; default edge-ad-<station>.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval in seconds.")
    protocol: Literal["auto", "3.1.1", "5"] = Field(
        "auto",
        description=(
            "MQTT protocol version. auto: MQTT 5 where the broker speaks it, else 3.1.1 (a broker that refuses "
            "MQTT 5 at CONNACK gets 3.1.1 from then on, logged once; the version in use is in the stats). With 5, "
            "triggers and commands may carry a Response Topic and Correlation Data: their answers also go to that "
            "topic with the same correlation data (docs/mqtt.md)."
        ),
    )
    session_expiry_s: int = Field(
        3600,
        ge=0,
        le=2**32 - 1,
        description=(
            "How long the broker keeps the station's session (its subscriptions and the QoS 1 triggers and "
            "commands sent meanwhile) after the connection is lost; 0 = a clean session at every connect. MQTT 5 "
            "sends it as the Session Expiry Interval; MQTT 3.1.1 knows no expiry: any value > 0 asks for a "
            "persistent session that the broker keeps by its own rules (mosquitto: persistent_client_expiration)."
        ),
    )
    qos: Literal[0, 1] = Field(1, description="QoS of verdict messages.")
    spool_max_messages: int = Field(
        100_000,
        ge=100,
        description="Verdicts kept on disk while the broker is unreachable; the oldest are dropped beyond this.",
    )
    spool_memory_messages: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description=(
            "Verdicts held in memory while the spool database cannot be written (disk full); the oldest are "
            "dropped beyond this (counted). They move to disk when space returns."
        ),
    )
    username: str | None = Field(None, description="Broker user name (password from password_file or password_env).")
    password_file: Path | None = Field(
        None,
        description=(
            "File holding the password (first line). A relative path is looked up in $CREDENTIALS_DIRECTORY "
            "(systemd LoadCredential=) when set. Never logged."
        ),
    )
    password_env: str | None = Field(None, description="Environment variable holding the password. Never logged.")
    tls: TlsConfig | None = Field(None, description="TLS settings; null for plain TCP.")
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the first connection before starting anyway."
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        return "5" if value == 5 and not isinstance(value, bool) else value  # YAML reads `protocol: 5` as a number

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        return self
