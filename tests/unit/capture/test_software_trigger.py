"""The software-trigger queue on its own: one trigger in flight, fired from its own thread, never ahead."""

from __future__ import annotations

import threading
import time

import pytest

from edge_ad.capture.genicam.triggers import SoftwareTrigger
from edge_ad.errors import CameraError

REFUSAL = "TriggerSoftware: GigEVision write_register timeout"


class Camera:
    """Records TriggerSoftware commands; can hang or refuse them."""

    def __init__(self) -> None:
        self.fired: list[float] = []
        self.hang = threading.Event()
        self.refuse = False

    def execute(self) -> None:
        if self.refuse:
            raise CameraError(REFUSAL)
        self.fired.append(time.time_ns())
        if self.hang.is_set():
            time.sleep(3)  # a camera that stopped answering: each command waits for its GVCP timeout


def wait_until(predicate, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_one_trigger_in_flight_and_each_frame_binds_the_one_that_made_it():
    camera, lost = Camera(), []
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=5, camera="cam")
    try:
        for part in ("a", "b", "c"):
            trigger.fire(part, lambda token: True, lambda token, reason: lost.append(token))
        assert wait_until(lambda: len(camera.fired) == 1)
        time.sleep(0.1)
        assert len(camera.fired) == 1, "never fired ahead of the frame in flight"
        assert trigger.bind(camera.fired[0] - 10**9) is None, "a frame that began before the trigger is not its frame"
        assert trigger.bind(camera.fired[0] + 1).token == "a"
        assert wait_until(lambda: len(camera.fired) == 2)
        assert trigger.bind(time.time_ns()).token == "b"
    finally:
        trigger.close("stopping")
    assert lost == ["c"], "what was still waiting is told at close"


def test_triggers_nobody_waits_for_any_more_are_never_fired():
    """A storm: the inbox dropped or expired most of them; the camera fires only the ones still wanted."""
    camera = Camera()
    wanted = {f"p{i}" for i in range(490, 500)}
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=5, camera="cam")
    try:
        for i in range(500):
            trigger.fire(f"p{i}", lambda token: token in wanted, lambda token, reason: None)
        bound = []
        deadline = time.monotonic() + 10
        while len(bound) < 10 and time.monotonic() < deadline:
            if len(camera.fired) > len(bound):
                bound.append(trigger.bind(time.time_ns()).token)
            time.sleep(0.005)
    finally:
        trigger.close("stopping")
    assert bound == [f"p{i}" for i in range(490, 500)] and len(camera.fired) == 10


def test_a_camera_that_stops_answering_never_blocks_the_caller_and_loses_its_triggers_at_once():
    camera, lost = Camera(), []
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=0.2, camera="cam")
    camera.hang.set()
    started = time.monotonic()
    for part in ("a", "b", "c"):
        trigger.fire(part, lambda token: True, lambda token, reason: lost.append((token, reason)))
    closed_at = time.monotonic()
    trigger.close("camera cam went offline before taking its frame")
    assert time.monotonic() - started < 0.5 and closed_at - started < 0.2, "fire() and close() never wait"
    assert [token for token, _ in lost] == ["a", "b", "c"]


def test_a_refused_command_loses_that_trigger_and_refuses_the_next_ones():
    camera, lost = Camera(), []
    camera.refuse = True
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=5, camera="cam")
    try:
        trigger.fire("a", lambda token: True, lambda token, reason: lost.append((token, reason)))
        assert wait_until(lambda: trigger.broken is not None)
        with pytest.raises(CameraError, match="cam: TriggerSoftware: GigEVision write_register timeout"):
            trigger.fire("b", lambda token: True, lambda token, reason: None)
    finally:
        trigger.close("closed")
    assert lost == [
        ("a", "the camera refused the software trigger: TriggerSoftware: GigEVision write_register timeout")
    ]
    assert trigger.lost == 1


def test_a_late_frame_is_given_up_and_the_next_trigger_fires():
    camera, lost = Camera(), []
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=0.2, camera="cam")
    try:
        trigger.fire("late", lambda token: True, lambda token, reason: lost.append(token))
        trigger.fire("next", lambda token: True, lambda token, reason: lost.append(token))
        assert wait_until(lambda: len(camera.fired) == 1)
        time.sleep(0.25)
        trigger.check_late()
        assert lost == ["late"] and wait_until(lambda: len(camera.fired) == 2)
        assert trigger.bind(time.time_ns()).token == "next"
    finally:
        trigger.close("stopping")


def test_a_failing_lost_callback_does_not_stop_the_trigger_thread():
    camera = Camera()
    trigger = SoftwareTrigger(camera.execute, frame_timeout_s=0.1, camera="cam")

    def explode(token, reason):
        raise RuntimeError("the answer could not be sent")

    try:
        trigger.fire("late", lambda token: True, explode)
        assert wait_until(lambda: len(camera.fired) == 1)
        time.sleep(0.15)
        trigger.check_late()  # the callback raises: logged, the queue goes on
        trigger.fire("next", lambda token: True, explode)
        assert wait_until(lambda: len(camera.fired) == 2), "the trigger thread died"
        assert trigger.bind(time.time_ns()).token == "next"
    finally:
        trigger.close("stopping")
