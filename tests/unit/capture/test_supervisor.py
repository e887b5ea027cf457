from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_ad.capture import CaptureSupervisor, EndOfSource
from edge_ad.config import CameraConfig
from edge_ad.errors import CameraError
from edge_ad.types import Frame


class FakeSource:
    """Delivers ``frames`` frames, then hangs (``hang``), fails, or ends."""

    def __init__(self, frames: int, then: str, release: threading.Event) -> None:
        self.name = "fake"
        self.live = False
        self.left = frames
        self.then = then
        self.release = release
        self.count = 0

    def read(self) -> Frame | None:
        if self.left == 0:
            if self.then == "hang":
                self.release.wait(30)  # a read() that never returns while the test runs
                return None
            if self.then == "fail":
                raise CameraError("camera.source: fake stopped delivering frames")
            return None
        self.left -= 1
        self.count += 1
        time.sleep(0.01)
        return Frame(image=np.zeros((4, 4, 3), np.uint8), ts=time.time(), index=self.count, origin="fake")

    def close(self) -> None:
        self.release.set()


def config(**kw) -> CameraConfig:
    return CameraConfig(source="fake", stall_timeout_s=0.5, reconnect_max_s=1, **kw)


def collect(sup: CaptureSupervisor, n: int, seconds: float = 10) -> list[Frame]:
    frames, deadline = [], time.monotonic() + seconds
    while len(frames) < n and time.monotonic() < deadline:
        frame = sup.get(timeout=0.05)
        if frame is not None:
            frames.append(frame)
    return frames


@pytest.mark.parametrize("failure", ["hang", "fail"])  # a read() that hangs, one that raises
def test_lost_camera_goes_offline_and_comes_back(failure):
    release = threading.Event()
    plans = [(3, failure), (None, None), (3, "end")]  # first source dies, one reopen fails, then it is back
    states = []

    def opener(cfg):
        frames, then = plans.pop(0) if plans else (3, "end")
        if frames is None:
            raise CameraError("camera.source: cannot open device 'fake'")
        return FakeSource(frames, then, release)

    sup = CaptureSupervisor(config(), on_state=lambda s, r: states.append((s, r)), opener=opener)
    sup.start()
    assert len(collect(sup, 3)) == 3
    deadline = time.monotonic() + 15
    while len(states) < 4 and time.monotonic() < deadline:  # back online: reported after the reconnect count
        time.sleep(0.05)
    assert [s for s, _ in states] == ["online", "offline", "offline", "online"]  # the failed reopen says why
    assert "cannot open device 'fake'" in states[2][1]
    reason = states[1][1]
    assert ("no frames from fake in" in reason) if failure == "hang" else ("stopped delivering" in reason)
    assert len(collect(sup, 3)) == 3
    with pytest.raises(EndOfSource):
        sup.get(timeout=1)
    sup.close()


def test_lossless_replay_never_drops_for_a_slow_consumer(tmp_path):
    import cv2

    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    sup = CaptureSupervisor(CameraConfig(source=str(folder), stall_timeout_s=0.3))
    sup.start()
    got = []
    while True:
        time.sleep(0.1)  # slower than the reader and longer than... nothing: lossless waits
        try:
            frame = sup.get(timeout=2)
        except EndOfSource:
            break
        got.append(frame.origin)
    assert got == [f"{i}.png" for i in range(6)] and sup.dropped == 0 and sup.state == "online"
    sup.close()


def test_open_failure_at_start_is_fatal():
    def opener(cfg):
        raise CameraError("camera.source: cannot open device '/dev/video9'")

    with pytest.raises(CameraError, match="/dev/video9"):
        CaptureSupervisor(config(), opener=opener).start()


class WaitingCamera:
    """A triggered camera: no frame until ``fire``, IDLE meanwhile (alive)."""

    live = False
    name = "waiting"

    def __init__(self) -> None:
        self.fired: list[object] = []

    def read(self):
        from edge_ad.capture.poll import IDLE

        if self.fired:
            token = self.fired.pop(0)
            return Frame(image=np.zeros((4, 4, 3), np.uint8), ts=time.time(), index=1, origin="w", trigger=token)
        time.sleep(0.05)
        return IDLE

    def fire(self, token: object, wanted, lost) -> None:
        self.fired.append(token)

    def close(self) -> None:
        pass


def test_a_triggered_camera_waiting_past_the_stall_timeout_stays_online_and_fires():
    states = []
    sup = CaptureSupervisor(config(), on_state=lambda s, r: states.append(s), opener=lambda cfg: WaitingCamera())
    sup.start()
    try:
        time.sleep(1.2)  # over twice the 0.5 s stall timeout
        assert states == ["online"] and sup.waiting
        sup.fire("part-1", lambda token: True, print)
        frame = sup.get(timeout=2)
        assert frame is not None and frame.trigger == "part-1"
    finally:
        sup.close()


def test_fire_on_a_camera_that_cannot_be_triggered_or_is_offline_is_refused():
    release = threading.Event()
    sup = CaptureSupervisor(config(), opener=lambda cfg: FakeSource(100, "end", release))
    sup.start()
    try:
        with pytest.raises(CameraError, match="cannot be triggered by software"):
            sup.fire("x", lambda token: True, print)
        assert not sup.waiting, "a streaming camera is not waiting for triggers"
    finally:
        sup.close()
    with pytest.raises(CameraError, match="offline"):
        CaptureSupervisor(config()).fire("x", lambda token: True, print)


def test_a_reconnect_failing_for_a_new_reason_updates_the_offline_reason():
    """A camera back on the network but held by a vendor tool: status says so instead of the old reason."""
    release = threading.Event()
    plans = [lambda: FakeSource(2, "fail", release)] + [
        lambda: (_ for _ in ()).throw(CameraError("camera.source: X is in use by another application"))
    ] * 20
    reasons = []
    sup = CaptureSupervisor(config(), on_state=lambda s, r: reasons.append((s, r)), opener=lambda cfg: plans.pop(0)())
    sup.start()
    try:
        deadline = time.monotonic() + 10
        while len(reasons) < 3 and time.monotonic() < deadline:
            sup.get(timeout=0.1)
    finally:
        sup.close()
    assert [s for s, _ in reasons[:3]] == ["online", "offline", "offline"]
    assert "stopped delivering" in reasons[1][1] and "in use by another application" in reasons[2][1]
    assert len(reasons) == 3, "the same reason again is not reported again"
