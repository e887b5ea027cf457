"""cmd/recalibrate may only name a defects folder under recalibration.defects_root, and cannot probe the disk."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_ad.config import RecalibrationConfig
from edge_ad.service.command_auth import CommandVerifier, sign_command
from edge_ad.service.recalibration import RecalibrationRunner

KEY = b"k" * 32

SAME = "defects_dir: not an allowed folder of defect images (see recalibration.defects_root)"


def runner(root: Path | None) -> tuple[RecalibrationRunner, list[dict]]:
    replies: list[dict] = []
    config = SimpleNamespace(
        recalibration=RecalibrationConfig(defects_root=root, min_frames=8, target_false_reject=0.5)
    )
    return RecalibrationRunner(config, CommandVerifier(KEY, 60), replies.append), replies  # type: ignore[arg-type]


def command(defects_dir: str) -> bytes:
    return sign_command({"id": "c1", "frames": 10, "defects_dir": defects_dir}, KEY)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "scratches").mkdir(parents=True)
    (tmp_path / "root" / "notes.txt").write_text("x")
    (tmp_path / "secret").mkdir()
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "secret")
    return tmp_path / "root"


@pytest.mark.parametrize(
    "defects_dir",
    ["../secret", "/etc", "/root", "escape", "missing", "notes.txt", "scratches/../../secret"],
)
def test_every_path_outside_the_root_gets_the_same_rejection(root, defects_dir):
    station, replies = runner(root)
    station.on_message(command(defects_dir))
    assert station.rejected == 1 and replies == [replies[0] | {"state": "rejected", "reason": SAME}]


def test_accepted_under_the_root_refused_without_one(root):
    station, replies = runner(root)
    station.on_message(command("scratches"))
    assert station.accepted == 1 and replies[0]["state"] == "collecting"
    assert station._defects(Path("scratches")) == (root / "scratches").resolve()
    unconfined, replies = runner(None)
    unconfined.on_message(command("scratches"))
    assert unconfined.rejected == 1 and replies[0]["reason"] == SAME


def test_the_frame_count_defaults_to_what_acceptance_needs_and_too_few_are_refused_at_once():
    replies: list[dict] = []
    config = SimpleNamespace(recalibration=RecalibrationConfig(target_false_reject=0.01))  # 100 held back: 400
    station = RecalibrationRunner(config, CommandVerifier(KEY, 60), replies.append)  # type: ignore[arg-type]
    station.on_message(sign_command({"id": "c1"}, KEY))
    assert replies[-1] == replies[-1] | {"id": "c1", "state": "collecting", "frames": 400}
    station._command = None  # finished collecting
    station.on_message(sign_command({"id": "c2", "frames": 40}, KEY))
    assert (
        replies[-1]["state"] == "rejected"
        and "needs at least 100 held back (400 good frames" in (replies[-1]["reason"])
    )
    tight = SimpleNamespace(recalibration=RecalibrationConfig(target_false_reject=0.001))
    RecalibrationRunner(tight, CommandVerifier(KEY, 60), replies.append).on_message(sign_command({"id": "c3"}, KEY))  # type: ignore[arg-type]
    assert (
        replies[-1]["state"] == "rejected"
        and "needs 4000 good frames, more than a command collects" in (replies[-1]["reason"])
    )


def test_collecting_reports_progress_at_most_twice_a_second_then_fitting(root, monkeypatch):
    import numpy as np

    from edge_ad.service import recalibration
    from edge_ad.types import Frame

    clock = [100.0]
    monkeypatch.setattr(recalibration.time, "monotonic", lambda: clock[0])
    started: list[int] = []
    station, replies = runner(root)
    station.config.recalibration = RecalibrationConfig(min_frames=8, target_false_reject=0.5, max_collect_mb=64)
    monkeypatch.setattr(station, "_run", lambda command, frames, route=None: started.append(len(frames)))
    station.on_message(sign_command({"id": "c1", "frames": 10, "interval_s": 0}, KEY))
    image = np.zeros((8, 8, 3), np.uint8)
    for i in range(10):
        clock[0] += 0.2  # five frames a second: every third frame reports
        station.offer(Frame(image=image, ts=float(i + 1), index=i + 1, origin="t"))
    station.join(5)
    progress = [r["collected"] for r in replies if r["state"] == "collecting" and "collected" in r]
    assert progress == [3, 6, 9] and [r["state"] for r in replies][-1] == "fitting"
    assert replies[-1]["frames"] == 10 and started == [10]


def test_a_command_arriving_between_the_last_frame_and_the_worker_start_is_refused(root, monkeypatch):
    """The window the worker's start leaves (its ``fitting`` reply goes out first) takes no second command."""
    import numpy as np

    from edge_ad.types import Frame

    station, replies = runner(root)
    station.config.recalibration = RecalibrationConfig(min_frames=8, target_false_reject=0.5, max_collect_mb=64)
    monkeypatch.setattr(station, "_run", lambda command, frames, route=None: None)
    answered = station._reply

    def reply(command_id, state, route=None, **fields):
        answered(command_id, state, route, **fields)
        if state == "fitting":  # the last frame is in; the worker has not started yet
            station.on_message(sign_command({"id": "c2", "frames": 10, "interval_s": 0}, KEY))

    monkeypatch.setattr(station, "_reply", reply)
    station.on_message(sign_command({"id": "c1", "frames": 10, "interval_s": 0}, KEY))
    image = np.zeros((8, 8, 3), np.uint8)
    for i in range(10):
        station.offer(Frame(image=image, ts=float(i + 1), index=i + 1, origin="t"))
    station.join(5)
    second = [r for r in replies if r.get("id") == "c2"]
    assert second == [second[0] | {"state": "rejected", "reason": "a recalibration is already running"}], replies
    assert station.accepted == 1 and station._command is None


def test_a_fitting_reply_that_fails_still_starts_the_worker_and_frees_the_station(root, monkeypatch):
    import numpy as np

    from edge_ad.types import Frame

    station, replies = runner(root)
    station.config.recalibration = RecalibrationConfig(min_frames=8, target_false_reject=0.5, max_collect_mb=64)
    ran: list[int] = []
    monkeypatch.setattr(station, "_run", lambda command, frames, route=None: ran.append(len(frames)))
    answered = station._reply

    def reply(command_id, state, route=None, **fields):
        if state == "fitting":
            raise OSError("the spool's disk is full")
        answered(command_id, state, route, **fields)

    monkeypatch.setattr(station, "_reply", reply)
    station.on_message(sign_command({"id": "c1", "frames": 10, "interval_s": 0}, KEY))
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(OSError):
        for i in range(10):
            station.offer(Frame(image=image, ts=float(i + 1), index=i + 1, origin="t"))
    station.join(5)
    assert ran == [10] and not station._fitting()
    monkeypatch.setattr(station, "_reply", answered)
    station.on_message(sign_command({"id": "c2", "frames": 10, "interval_s": 0}, KEY))
    assert replies[-1]["id"] == "c2" and replies[-1]["state"] == "collecting"


def test_join_without_a_started_worker_returns():
    station, _ = runner(None)
    station.join(0.1)  # none made
    station._worker = threading.Thread(target=lambda: None)  # made, never started
    station.join(0.1)
