"""Console section: the technician console in the browser, its own process (`edge-ad console`, docs/console.md)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel

__all__ = ["USERS_FILE", "ConsoleConfig", "is_loopback"]

USERS_FILE = "console-users.json"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleConfig(EdgeAdModel):
    """Where the console listens, who may log in, and its HTTPS certificate."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        pattern=r"^[^\x00-\x20/]+$",
        description="Address the console listens on. The default reaches it only from this PC (its panel); "
        "0.0.0.0 or the PC's address makes it reachable from the plant network (tablets).",
    )
    port: int = Field(8443, ge=1, le=65535, description="TCP port of the console.")
    users_file: Path | None = Field(
        None,
        description="Users and their argon2 password hashes and roles, managed with `edge-ad console-user`. "
        f"null: <service.state_dir>/{USERS_FILE}.",
    )
    tls: bool = Field(
        True,
        description="Serve HTTPS. false serves plain HTTP, allowed only when host is a loopback address "
        "(passwords and session cookies would cross the network in clear).",
    )
    tls_cert: Path | None = Field(
        None,
        description="HTTPS certificate (PEM, may hold the chain) with its tls_key, e.g. from the plant's PKI. "
        "null: a self-signed one made on first start in <service.state_dir>/console/ (key mode 0600) and kept.",
    )
    tls_key: Path | None = Field(None, description="Private key (PEM) of tls_cert.")
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="A login lasts this long (hours).")
    login_attempts_per_minute: int = Field(
        5, ge=1, le=1000, description="Login attempts allowed per client address in any 60 seconds; more get 429."
    )
    cpu: Literal["idle", "normal"] = Field(
        "idle",
        description="CPU scheduling of the console process. idle (Linux SCHED_IDLE): it runs only when the "
        "station's own work leaves a core free, so an open console cannot delay a verdict (pages may answer "
        "slower on a saturated PC). normal: an ordinary process.",
    )

    @model_validator(mode="after")
    def _safe_transport(self) -> ConsoleConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if not self.tls and not is_loopback(self.host):
            raise ValueError(
                f"tls: false with host {self.host!r} would send passwords and session cookies in clear over the "
                "network; keep tls: true, or listen on 127.0.0.1 only"
            )
        if not self.tls and self.tls_cert is not None:
            raise ValueError("tls_cert is given but tls is false: remove one of them")
        return self

    @property
    def url(self) -> str:
        """The address a browser on this PC opens the console at (``https://127.0.0.1:8443/`` by default)."""
        host = self.host
        if host in ("0.0.0.0", "::"):  # every address: this PC reaches it on loopback
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def with_base(self, base: Path) -> ConsoleConfig:
        """The section with relative ``users_file``, ``tls_cert`` and ``tls_key`` resolved against ``base``."""
        keys = ("users_file", "tls_cert", "tls_key")
        files = {
            k: v if (v := getattr(self, k).expanduser()).is_absolute() else base / v for k in keys if getattr(self, k)
        }
        return self.model_copy(update=files)
