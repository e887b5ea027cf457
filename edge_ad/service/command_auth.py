"""Signed station commands: HMAC-SHA256 with a timestamp and a nonce, checked by the station itself.

A command on ``<prefix>/<station>/cmd/<name>`` is an envelope ``{"body": "<JSON text>", "hmac": "<hex>"}``.
``hmac`` is HMAC-SHA256 of the UTF-8 bytes of ``body`` with the station's command key, so the
signed bytes are exactly the bytes sent (no canonical JSON needed in any language). The body is
the command (e.g. ``{"id": "r1", "dry_run": true}``) plus ``ts`` (Unix seconds) and ``nonce``
(16-64 characters of ``[A-Za-z0-9_-]``). The station refuses a bad signature, a ``ts`` further than
``commands.max_age_s`` from its clock or earlier than its own start (so a restart does not reopen
the window), and a nonce it has already accepted within that window. The broker's ACLs are the
second layer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from typing import Any

from pydantic import ValidationError

from edge_ad.config import CommandsConfig
from edge_ad.config.secrets import read_secret
from edge_ad.errors import ConfigError, first_line
from edge_ad.publish.messages import MAX_BODY, NONCE_PATTERN
from edge_ad.publish.messages import CommandEnvelope as Envelope
from edge_ad.service.inbound import load_json

__all__ = ["MAX_BODY", "CommandRejected", "CommandVerifier", "command_key", "sign_command"]

logger = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32
MAX_NONCES = 10_000  # accepted commands remembered within the replay window
NONCE = re.compile(NONCE_PATTERN)


class CommandRejected(ValueError):
    """A command the station refuses.

    ``answer`` tells whether the sender must always get a reply: only for a valid signature on a fresh
    command (a replayed or stale one is answered at most once a minute, like junk). ``body`` is what
    the command said, when it could be read (its ``id`` is echoed).
    """

    def __init__(self, reason: str, answer: bool = False, body: object = None) -> None:
        super().__init__(reason)
        self.answer = answer
        self.body = body


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


def _mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign_command(command: dict[str, Any], key: bytes, ts: float | None = None, nonce: str | None = None) -> bytes:
    """The MQTT payload of ``command`` signed with ``key`` (a fresh timestamp and nonce unless given)."""
    body = json.dumps(
        {**command, "ts": round(time.time() if ts is None else ts, 3), "nonce": nonce or secrets.token_hex(16)},
        separators=(",", ":"),
    )
    return json.dumps({"body": body, "hmac": _mac(key, body.encode())}, separators=(",", ":")).encode()


class CommandVerifier:
    """Opens signed commands: signature, then freshness, then the nonce (in that order, cheapest trust first).

    Args:
        key: The station's command key.
        max_age_s: Largest difference between a command's ``ts`` and the station's clock.
        started: When the station started (default now): a command signed before it is refused, so a
            command captured before a restart cannot be replayed after it (no nonce store to lose).
    """

    def __init__(self, key: bytes, max_age_s: float, started: float | None = None) -> None:
        self.key = key
        self.max_age_s = max_age_s
        self.started = time.time() if started is None else started
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

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
        if not hmac.compare_digest(_mac(self.key, envelope.body.encode()), envelope.hmac):
            raise CommandRejected(
                "signature does not match: sign with this station's commands key", body=_readable(envelope.body)
            )
        try:
            body = load_json(envelope.body.encode(), MAX_BODY, "body")
        except ValueError as exc:
            raise CommandRejected(first_line(exc), answer=True) from None
        if not isinstance(body, dict):
            raise CommandRejected("body: not a JSON object", answer=True)
        try:
            self._check_fresh(body.pop("ts", None), body.pop("nonce", None))
        except CommandRejected as exc:
            raise CommandRejected(str(exc), body=body) from None
        return body

    def _check_fresh(self, ts: object, nonce: object) -> None:
        """Refuse a timestamp outside the window or before the start, or a nonce already used; remember it."""
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not -1e11 < ts < 1e11:  # 1e11 s: year 5138
            raise CommandRejected("ts: give the send time in Unix seconds")
        if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
            raise CommandRejected("nonce: give 16-64 characters of A-Z a-z 0-9 _ -")
        now = time.time()
        if abs(now - ts) > self.max_age_s:
            raise CommandRejected(
                f"ts: {now - ts:+.0f} s from the station's clock (allowed {self.max_age_s:.0f} s): "
                "resend, or check both clocks (NTP)"
            )
        if ts < self.started - 1.0:  # 1 s: ts is rounded to milliseconds; a restart takes longer than that
            raise CommandRejected("ts: signed before the station started (a replay after a restart?); resend")
        self._remember(nonce, ts, now)

    def _remember(self, nonce: str, ts: float, now: float) -> None:
        with self._lock:
            self._seen = {n: t for n, t in self._seen.items() if abs(now - t) <= self.max_age_s}
            if nonce in self._seen:
                raise CommandRejected("nonce: already used (a replayed command)")
            if len(self._seen) >= MAX_NONCES:
                raise CommandRejected("too many commands in the replay window; wait")
            self._seen[nonce] = ts


def _readable(body: str) -> object:
    """The body of an unsigned command as far as it parses (only to echo a plausible id), else None."""
    try:
        return load_json(body.encode(), MAX_BODY, "body")
    except ValueError:
        return None
