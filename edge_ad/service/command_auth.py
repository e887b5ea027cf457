"""Signed station commands: HMAC-SHA256 with a timestamp and a nonce, checked by the station itself.

A command on ``<prefix>/<station>/cmd/<name>`` is an envelope ``{"body": "<JSON text>", "hmac": "<hex>"}``.
``hmac`` is HMAC-SHA256 of the UTF-8 bytes of ``body`` with the station's command key, so the
signed bytes are exactly the bytes sent (no canonical JSON needed in any language). The body is
the command (e.g. ``{"id": "r1", "dry_run": true}``) plus ``ts`` (Unix seconds) and ``nonce``
(16-64 characters of ``[A-Za-z0-9_-]``). The station refuses a bad signature, a ``ts`` further than
``commands.max_age_s`` from its clock, and a nonce it has already accepted within that window
(kept on disk, so a restart does not reopen the window). The broker's ACLs are the second layer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from edge_ad.config import CommandsConfig
from edge_ad.config.base import EdgeAdModel
from edge_ad.config.secrets import read_secret
from edge_ad.errors import ConfigError, first_line
from edge_ad.service.inbound import load_json

__all__ = ["CommandRejected", "CommandVerifier", "command_key", "sign_command"]

logger = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32
MAX_BODY = 2048
MAX_NONCES = 10_000  # accepted commands remembered within the replay window
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class CommandRejected(ValueError):
    """A command the station refuses; ``authenticated``: its signature was valid (then ``body`` is what it said)."""

    def __init__(self, reason: str, authenticated: bool = False, body: object = None) -> None:
        super().__init__(reason)
        self.authenticated = authenticated
        self.body = body


class Envelope(EdgeAdModel):
    """What travels on ``cmd/<name>``: the command's JSON text and its signature."""

    body: str = Field(max_length=MAX_BODY)
    hmac: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 of body's UTF-8 bytes, lowercase hex.")


def command_key(config: CommandsConfig) -> bytes:
    """The station's command key from ``commands.secret_file`` / ``secret_env``.

    Raises:
        ConfigError: None configured, unreadable, or shorter than 32 characters.
    """
    key = read_secret("commands.secret", config.secret_env, config.secret_file)
    if key is None:
        raise ConfigError("commands: set commands.secret_file or commands.secret_env (the key that signs commands)")
    if len(key.strip()) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"commands.secret: the key has {len(key.strip())} characters, needs at least {MIN_KEY_LENGTH} "
            "(generate one with: openssl rand -hex 32)"
        )
    return key.strip().encode()


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def sign_command(command: dict[str, Any], key: bytes, ts: float | None = None, nonce: str | None = None) -> bytes:
    """The MQTT payload of ``command`` signed with ``key`` (a fresh timestamp and nonce unless given)."""
    body = json.dumps(
        {**command, "ts": round(time.time() if ts is None else ts, 3), "nonce": nonce or secrets.token_hex(16)},
        separators=(",", ":"),
    )
    return json.dumps({"body": body, "hmac": _mac(key, body)}, separators=(",", ":")).encode()


class CommandVerifier:
    """Opens signed commands: signature, then freshness, then the nonce (in that order, cheapest trust first).

    Args:
        key: The station's command key.
        max_age_s: Largest difference between a command's ``ts`` and the station's clock.
        nonce_file: Where accepted nonces are kept across restarts (None: memory only).
    """

    def __init__(self, key: bytes, max_age_s: float, nonce_file: Path | None = None) -> None:
        self.key = key
        self.max_age_s = max_age_s
        self.nonce_file = nonce_file
        self._lock = threading.Lock()
        self._seen: dict[str, float] = self._load()

    def open(self, payload: bytes) -> dict[str, Any]:
        """The command in a signed payload, without ``ts`` and ``nonce``.

        Raises:
            CommandRejected: Not an envelope, bad signature, stale or future timestamp, replayed nonce.
        """
        try:
            envelope = Envelope.model_validate(load_json(payload, 2 * MAX_BODY + 256, "payload"))
        except (ValueError, ValidationError) as exc:
            reason = "not a signed command" if isinstance(exc, ValidationError) else first_line(exc)
            raise CommandRejected(f"{reason}: send {{'body': <command JSON text>, 'hmac': <hex>}}") from None
        if not hmac.compare_digest(_mac(self.key, envelope.body), envelope.hmac):
            raise CommandRejected("signature does not match: sign with this station's commands key")
        try:
            body = load_json(envelope.body.encode(), MAX_BODY, "body")
        except ValueError as exc:
            raise CommandRejected(first_line(exc), authenticated=True) from None
        if not isinstance(body, dict):
            raise CommandRejected("body: not a JSON object", authenticated=True)
        try:
            self._check_fresh(body.pop("ts", None), body.pop("nonce", None))
        except CommandRejected as exc:
            raise CommandRejected(str(exc), authenticated=True, body=body) from None
        return body

    def _check_fresh(self, ts: object, nonce: object) -> None:
        """Refuse a timestamp outside the window or a nonce already accepted in it; remember the nonce."""
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise CommandRejected("ts: give the send time in Unix seconds")
        if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
            raise CommandRejected("nonce: give 16-64 characters of A-Z a-z 0-9 _ -")
        now = time.time()
        if abs(now - ts) > self.max_age_s:
            raise CommandRejected(
                f"ts: {now - ts:+.0f} s from the station's clock (allowed {self.max_age_s:.0f} s): "
                "resend, or check both clocks (NTP)"
            )
        self._remember(nonce, ts, now)

    def _remember(self, nonce: str, ts: float, now: float) -> None:
        with self._lock:
            self._seen = {n: t for n, t in self._seen.items() if abs(now - t) <= self.max_age_s}
            if nonce in self._seen:
                raise CommandRejected("nonce: already used (a replayed command)")
            if len(self._seen) >= MAX_NONCES:
                raise CommandRejected("too many commands in the replay window; wait")
            self._seen[nonce] = ts
            self._save()

    def _load(self) -> dict[str, float]:
        if self.nonce_file is None or not self.nonce_file.exists():
            return {}
        try:
            seen = json.loads(self.nonce_file.read_text())
            return {str(n): float(t) for n, t in seen.items()}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            logger.warning("commands: %s unreadable (%s); starting with no remembered nonces", self.nonce_file, exc)
            return {}

    def _save(self) -> None:
        """Write the remembered nonces atomically (a failure is logged; they stay in memory)."""
        if self.nonce_file is None:
            return
        part = self.nonce_file.with_suffix(".part")
        try:
            part.write_text(json.dumps(self._seen))
            os.replace(part, self.nonce_file)
        except OSError as exc:
            logger.warning("commands: cannot write %s (%s); nonces kept in memory only", self.nonce_file, exc.strerror)
