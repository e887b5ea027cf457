"""Signed commands: only the holder of the station's key can command it, once, and only now."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.config import CommandsConfig, RecalibrationConfig
from edge_ad.errors import ConfigError
from edge_ad.service.command_auth import CommandRejected, CommandVerifier, command_key, sign_command
from edge_ad.service.recalibration import RecalibrationRunner

KEY = b"0123456789abcdef0123456789abcdef"


def rejected(verifier: CommandVerifier, payload: bytes) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        verifier.open(payload)
    return info.value


def test_a_signed_command_opens_once_and_never_after_a_restart():
    verifier = CommandVerifier(KEY, 60, started=time.time() - 5)
    payload = sign_command({"id": "r1", "dry_run": True}, KEY, ts=time.time() - 3)  # sent 3 s ago
    assert verifier.open(payload) == {"id": "r1", "dry_run": True}
    again = rejected(verifier, payload)
    assert "already used" in str(again) and not again.answer and again.body == {"id": "r1", "dry_run": True}
    restarted = CommandVerifier(KEY, 60)  # a restart does not reopen the window (and keeps no file to lose)
    assert "signed before the station started" in str(rejected(restarted, payload))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json.dumps({"id": "r1", "dry_run": False}).encode(), "not a signed command"),  # the probe's anonymous command
        (sign_command({"id": "r1"}, b"another key that is 32 chars lon"), "signature does not match"),
        (b"[" * 2000, "nested deeper than 8 levels"),
        (sign_command({"id": "r1"}, KEY, ts=0), "from the station's clock"),
        (sign_command({"id": "r1"}, KEY, nonce="short"), "nonce: give 16-64"),
        (sign_command({"id": "r1"}, KEY, ts=10**400), "ts: give the send time in Unix seconds"),  # was OverflowError
    ],
)
def test_unsigned_forged_stale_and_malformed_commands_are_refused(payload, reason):
    assert reason in str(rejected(CommandVerifier(KEY, 60, started=0), payload))


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


def test_duplicate_keys_and_loose_types_are_refused_even_when_signed():
    """Found by the probe: a signed body with "dry_run" twice ran for real (the last value wins), and
    "dry_run": "no" or 0 meant a real run."""
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=RecalibrationConfig(target_false_reject=0.5, min_frames=8))
    runner = RecalibrationRunner(config, CommandVerifier(KEY, 60, started=0), replies.append)  # type: ignore[arg-type]
    body = f'{{"id":"dup","frames":8,"dry_run":true,"ts":{time.time():f},"nonce":"{"n" * 16}","dry_run":false}}'
    mac = hmac.new(KEY, body.encode(), hashlib.sha256).hexdigest()
    runner.on_message(json.dumps({"body": body, "hmac": mac}).encode())
    assert replies[-1]["state"] == "rejected" and replies[-1]["reason"].startswith("body: duplicate keys")
    for loose in ({"dry_run": "no"}, {"dry_run": 0}, {"frames": "400"}):
        runner.on_message(sign_command({"id": "loose", **loose}, KEY))
        assert replies[-1]["state"] == "rejected", loose
    assert runner.accepted == 0 and runner.rejected == 4


def test_a_replayed_command_is_answered_at_most_once_a_minute():
    """Found by the probe: 5 000 replays of one captured command gave 3 373 replies in 6 s."""
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=RecalibrationConfig(target_false_reject=0.5, min_frames=8))
    runner = RecalibrationRunner(config, CommandVerifier(KEY, 60, started=0), replies.append)  # type: ignore[arg-type]
    payload = sign_command({"id": "once", "frames": 8}, KEY)
    for _ in range(1000):
        runner.on_message(payload)
    assert [r["state"] for r in replies] == ["collecting", "rejected"] and replies[1]["id"] == "once"
    assert runner.rejected == 999


def test_a_collection_that_stalls_gives_up_and_frees_the_station(monkeypatch):
    """Found by the probe: a command collecting from a camera gone offline blocked every later command."""
    import edge_ad.service.recalibration as recalibration

    monkeypatch.setattr(recalibration, "STALL_S", 0.0)
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=RecalibrationConfig(target_false_reject=0.5, min_frames=8))
    runner = RecalibrationRunner(config, CommandVerifier(KEY, 60, started=0), replies.append)  # type: ignore[arg-type]
    runner.on_message(sign_command({"id": "stuck", "frames": 8, "interval_s": 0}, KEY))
    runner.tick()
    assert replies[-1]["state"] == "error" and replies[-1]["reason"].startswith("collected 0 of 8 frames")
    runner.on_message(sign_command({"id": "next", "frames": 8}, KEY))
    assert replies[-1]["state"] == "collecting"
    runner.on_message(sign_command({"id": "long", "frames": 2000, "interval_s": 60}, KEY))
    assert "120000 s of collecting, more than 1800 s" in replies[-1]["reason"]


def test_a_command_whose_frames_would_not_fit_in_memory_is_refused_at_the_first_frame():
    """Found by the probe: 160 full-HD frames took the station from 159 MB to 1.14 GB; 2 000 would need 12.5 GB."""
    from edge_ad.types import Frame

    replies: list[dict] = []
    rc = RecalibrationConfig(target_false_reject=0.5, min_frames=8, max_collect_mb=100)
    runner = RecalibrationRunner(SimpleNamespace(recalibration=rc), CommandVerifier(KEY, 60), replies.append)  # type: ignore[arg-type]
    runner.on_message(sign_command({"id": "big", "frames": 400, "interval_s": 0}, KEY))
    runner.offer(Frame(image=np.zeros((1080, 1920, 3), np.uint8), ts=1.0, index=1))
    assert replies[-1]["state"] == "error" and replies[-1]["reason"].startswith(
        "frames: 400 frames of 1920x1080 need 2373 MB, more than recalibration.max_collect_mb 100"
    )
    assert runner._command is None and runner._frames == []
