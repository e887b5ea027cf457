"""Signed commands: only the holder of the station's key can command it, once, and only now."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from edge_ad.config import CommandsConfig
from edge_ad.errors import ConfigError
from edge_ad.service.command_auth import CommandRejected, CommandVerifier, command_key, sign_command
from edge_ad.service.recalibration import RecalibrationRunner

KEY = b"0123456789abcdef0123456789abcdef"


def rejected(verifier: CommandVerifier, payload: bytes) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        verifier.open(payload)
    return info.value


def test_a_signed_command_opens_once(tmp_path):
    verifier = CommandVerifier(KEY, 60, tmp_path / "nonces.json")
    payload = sign_command({"id": "r1", "dry_run": True}, KEY)
    assert verifier.open(payload) == {"id": "r1", "dry_run": True}
    again = rejected(verifier, payload)
    assert "already used" in str(again) and again.authenticated
    restarted = CommandVerifier(KEY, 60, tmp_path / "nonces.json")  # a restart does not reopen the window
    assert "already used" in str(rejected(restarted, payload))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json.dumps({"id": "r1", "dry_run": False}).encode(), "not a signed command"),  # the probe's anonymous command
        (sign_command({"id": "r1"}, b"another key that is 32 chars lon"), "signature does not match"),
        (b"[" * 2000, "nested deeper than 8 levels"),
        (sign_command({"id": "r1"}, KEY, ts=0), "from the station's clock"),
        (sign_command({"id": "r1"}, KEY, nonce="short"), "nonce: give 16-64"),
    ],
)
def test_unsigned_forged_stale_and_malformed_commands_are_refused(payload, reason):
    assert reason in str(rejected(CommandVerifier(KEY, 60), payload))


def test_a_tampered_body_breaks_the_signature():
    envelope = json.loads(sign_command({"id": "r1", "dry_run": True}, KEY))
    envelope["body"] = envelope["body"].replace('"dry_run":true', '"dry_run":false')
    assert "signature does not match" in str(rejected(CommandVerifier(KEY, 60), json.dumps(envelope).encode()))


def test_a_command_from_the_future_is_refused():
    import time

    late = sign_command({"id": "r1"}, KEY, ts=time.time() + 3600)
    assert "-3600 s from the station's clock (allowed 60 s)" in str(rejected(CommandVerifier(KEY, 60), late))


def test_the_key_comes_from_a_file_the_environment_or_systemd_credentials(tmp_path, monkeypatch):
    (tmp_path / "cmd.key").write_text(KEY.decode() + "\n")
    assert command_key(CommandsConfig(secret_file=tmp_path / "cmd.key")) == KEY
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert command_key(CommandsConfig(secret_file="cmd.key")) == KEY
    monkeypatch.setenv("EDGE_AD_CMD_KEY", "short")
    with pytest.raises(ConfigError, match=r"^commands.secret: the key has 5 characters, needs at least 32"):
        command_key(CommandsConfig(secret_env="EDGE_AD_CMD_KEY"))
    with pytest.raises(ConfigError, match=r"^commands.secret_env: environment variable NOPE is not set$"):
        command_key(CommandsConfig(secret_env="NOPE"))
    with pytest.raises(ConfigError, match=r"^commands.secret_file: cannot read .*missing.key \(No such file"):
        command_key(CommandsConfig(secret_file=tmp_path / "missing.key"))


def test_a_flood_of_junk_gets_one_log_line_and_one_reply(caplog):
    """Found: 10 000 garbage commands gave 10 011 WARNING lines and 10 000 replies."""
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=SimpleNamespace(defects_root=None))
    runner = RecalibrationRunner(config, CommandVerifier(KEY, 60), replies.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        for i in range(10_000):
            runner.on_message(b'{"id": "x%d"}' % i)
    assert runner.rejected == 10_000 and runner.accepted == 0
    assert len(replies) == 1 and replies[0]["reason"].startswith("not a signed command")
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
