"""OPC UA section: a server beside the MQTT topics, for PLCs and SCADA that speak OPC UA (docs/integration.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["PASSWORD_HASH_PATTERN", "SECURITY_POLICIES", "OpcUaConfig", "OpcUaUser", "SecurityPolicy"]

SecurityPolicy = Literal[
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
]
SECURITY_POLICIES: tuple[str, ...] = SecurityPolicy.__args__  # type: ignore[attr-defined]

# scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>: what `python -m edge_ad.opcua.auth` prints
PASSWORD_HASH_PATTERN = r"^scrypt\$\d{1,7}\$\d{1,2}\$\d{1,2}\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$"


class OpcUaUser(EdgeAdModel):
    """One OPC UA login: a name and exactly one password source (a hash, a file or an environment variable)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$", description="User name.")
    password_hash: str | None = Field(
        None,
        pattern=PASSWORD_HASH_PATTERN,
        description="scrypt hash of the password, printed by `python -m edge_ad.opcua.auth <name>`; the "
        "password itself is then stored nowhere.",
    )
    password_file: Path | None = Field(
        None,
        description="File holding the password (first line). A relative path is looked up in "
        "$CREDENTIALS_DIRECTORY (systemd LoadCredential=) when set, else next to this config file. Never logged.",
    )
    password_env: str | None = Field(None, description="Environment variable holding the password. Never logged.")

    @model_validator(mode="after")
    def _one_password_source(self) -> OpcUaUser:
        sources = [s for s in (self.password_hash, self.password_file, self.password_env) if s is not None]
        if len(sources) != 1:
            raise ValueError(f"user {self.name!r}: give exactly one of password_hash, password_file, password_env")
        if self.password_hash is not None:
            n, r, p = (int(v) for v in self.password_hash.split("$")[1:4])
            if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
                raise ValueError(
                    f"user {self.name!r}: password_hash has scrypt parameters n={n}, r={r}, p={p}; n must be a power "
                    "of 2 up to 2**20, r 1..32, p 1..16 (make one with: python -m edge_ad.opcua.auth NAME)"
                )
        return self


class OpcUaConfig(EdgeAdModel):
    """An OPC UA server in the daemon: the ``Station`` object (verdict, score, state, counters) and ``Trigger``."""

    enabled: bool = Field(False, description="Serve OPC UA (needs: pip install 'edge_ad[opcua]').")
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/edge_ad/",
        description="Endpoint URL the server listens on and announces: opc.tcp://<host>:<port>/<path>. "
        "Use 0.0.0.0 or the PC's address on the PLC network to be reachable from other machines.",
    )
    security_policies: list[SecurityPolicy] = Field(
        default_factory=lambda: ["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"],
        min_length=1,
        description="Endpoints offered (security policy and message mode). None is an unsigned, unencrypted "
        "channel (passwords on it are still encrypted, with a SignAndEncrypt policy that must be offered too); "
        "give it only on a trusted network.",
    )
    allow_anonymous: bool = Field(False, description="Accept sessions without a user name.")
    users: list[OpcUaUser] = Field(
        default_factory=list, description="Who may log in with a user name and password (each may call Trigger)."
    )
    certificate: Path | None = Field(
        None,
        description="Server certificate (DER or PEM) with its private_key, e.g. from the plant's PKI. Default: a "
        "self-signed one made on first start in <service.state_dir>/opcua/ (key mode 0600) and kept.",
    )
    private_key: Path | None = Field(None, description="Private key (PEM) of certificate.")
    trusted_clients: Path | None = Field(
        None,
        description="Folder of client application certificates (DER or PEM) allowed to open a signed channel; "
        "others are refused (BadCertificateUntrusted) and copied to <service.state_dir>/opcua/rejected/. "
        "null accepts any client certificate (users still log in with their password).",
    )
    answer_margin_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Trigger returns BadTimeout when no verdict came within service.trigger_timeout_s (the frame) "
        "plus this (its inference).",
    )
    max_sessions: int = Field(16, ge=1, le=1000, description="Most client connections at once; more are refused.")

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "opc.tcp" or not parts.hostname or port is None or not 1 <= port <= 65535:
            raise ValueError(f"{value!r} is not an endpoint like opc.tcp://0.0.0.0:4840/edge_ad/ (host and port)")
        if re.search(r"[\x00-\x20]", value):
            raise ValueError("endpoint must not contain spaces or control characters")
        return value

    @model_validator(mode="after")
    def _someone_can_log_in_safely(self) -> OpcUaConfig:
        if len(set(self.security_policies)) != len(self.security_policies):
            raise ValueError("security_policies lists a policy twice")
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("users: a name is given twice")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together: give both or neither")
        if (
            self.users
            and "None" in self.security_policies
            and not any(p.endswith("_SignAndEncrypt") for p in self.security_policies)
        ):
            raise ValueError(
                "security_policies: with None and no *_SignAndEncrypt policy passwords would cross the network in "
                "clear; add Basic256Sha256_SignAndEncrypt"
            )
        if self.enabled and not self.users and not self.allow_anonymous:
            raise ValueError("nobody could log in: add opcua.users (or allow_anonymous: true on a trusted network)")
        return self

    @property
    def host(self) -> str:
        """The host (or address) of ``endpoint``."""
        return urlsplit(self.endpoint).hostname or ""

    @property
    def port(self) -> int:
        """The TCP port of ``endpoint``."""
        return urlsplit(self.endpoint).port or 4840
