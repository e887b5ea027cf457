from __future__ import annotations

import pytest

from edge_ad.service.modes import BadTrigger, Debouncer, TriggerInbox, TriggerRejected, parse_trigger


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b'{"id": "part-42"}', "part-42"), (b'{"id": 4711}', 4711), (b'{"id": "4711"}', "4711"),
     ('{"id": "Ünïcode"}'.encode(), "Ünïcode")],
)  # fmt: skip
def test_valid_triggers_keep_the_json_type_of_their_id(payload, expected):
    """Found by the integrator: 4711 came back as "4711"."""
    part = parse_trigger(payload)
    assert part == expected and type(part) is type(expected)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8 text"),  # not UTF-8
        (b'["id"]', "must be a JSON object"),
        (b"{}", "'id' must be"),  # missing id
        (b'{"id": ""}', "'id' must be"),
        (b'{"id": true}', "'id' must be"),  # bool is not an id
        (b'{"id": {"x": 1}}', "'id' must be"),
        (('{"id": "' + "x" * 65 + '"}').encode(), "'id' must be"),  # too long
        (b'{"id": "a", "extra": 1}', "unknown field"),
        (b'{"id": "' + b"x" * 2000 + b'"}', "exceeds 1024"),  # oversized
    ],
)
def test_hostile_triggers_are_rejected(payload, message):
    with pytest.raises(ValueError, match=message):
        parse_trigger(payload)


@pytest.mark.parametrize(
    ("payload", "part"),
    [(b'{"id": "a", "extra": 1}', "a"), (b'{"id": 7, "ts": 1}', 7), (('{"id": "' + "x" * 65 + '"}').encode(), "x" * 65),
     (b'{"id": ""}', ""), (b'{"id": true}', None), (b'{"id": 1.5}', None), (b"garbage", None), (b"[1]", None)],
)  # fmt: skip
def test_a_refused_trigger_names_its_id_when_one_can_be_read(payload, part):
    """So it can be answered ERROR with that id; junk without one has nothing to answer to."""
    with pytest.raises(BadTrigger) as refused:
        parse_trigger(payload)
    assert refused.value.part == part


def test_trigger_is_answered_by_the_first_frame_after_it():
    inbox = TriggerInbox()
    assert inbox.take_for(10.0) is None
    inbox.push("a", 5.0)
    inbox.push("b", 6.0)
    assert inbox.take_for(4.9) is None  # frame older than the trigger: not an answer
    assert inbox.take_for(5.5).id == "a"
    assert inbox.take_for(5.6) is None  # "b" came later than this frame
    assert inbox.take_for(6.0).id == "b"
    assert inbox.accepted == 2


def test_debounce_n_of_m():
    d = Debouncer(2, 3)
    assert [d.update(x) for x in [True, False, True, False, False, True, True]] == [
        False, False, True, False, False, False, True,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        Debouncer(3, 2)


def test_triggers_beyond_the_queue_or_too_old_are_counted_never_answered_with_another_part():
    """Found by the probe: of 100 triggers in a burst 36 vanished without a log line or counter, and one was
    answered with a frame captured 16 s after it (another part)."""
    inbox = TriggerInbox(max_pending=64, timeout_s=5.0)
    for i in range(100):
        inbox.push(f"part-{i:03d}", 100.0 + i * 0.01)
    assert inbox.accepted == 100 and inbox.dropped == 36
    assert inbox.take_for(101.0).id == "part-036"
    assert inbox.take_for(116.5) is None  # every trigger waiting is older than 5 s: expired, not answered
    assert inbox.expired == 63


class Waiter:
    """A TriggerReply that records what became of its trigger."""

    def __init__(self) -> None:
        self.withdrawn = False
        self.outcome = None

    def answered(self, verdict) -> None:
        self.outcome = verdict

    def lost(self, rejected) -> None:
        self.outcome = rejected.kind


def test_a_waiting_caller_hears_when_its_trigger_is_dropped_or_expires_and_can_withdraw():
    inbox = TriggerInbox(max_pending=2, timeout_s=5.0)
    dropped, expired, withdrawn, answered = Waiter(), Waiter(), Waiter(), Waiter()
    inbox.push("a", 100.0, dropped)
    inbox.push("b", 100.0, expired)
    inbox.push("mqtt", 101.0)  # no one waits for an MQTT trigger
    assert dropped.outcome == "dropped" and inbox.dropped == 1
    assert inbox.take_for(106.0).id == "mqtt" and expired.outcome == "expired"
    inbox.push("c", 110.0, withdrawn)
    inbox.push("d", 110.5, answered)
    withdrawn.withdrawn = True  # its OPC UA call timed out: never answered with a later frame
    taken = inbox.take_for(111.0)
    assert taken.id == "d" and taken.reply is answered and withdrawn.outcome is None
    assert inbox.expired == 2 and inbox.accepted == 5


def test_an_id_is_checked_the_same_way_for_every_source():
    from edge_ad.service.modes import check_trigger_id

    assert check_trigger_id("P-1") == "P-1" and check_trigger_id(42) == 42
    for bad in ["", "x" * 65, True, 1.5, None, b"P-1"]:
        with pytest.raises(ValueError, match="1-64 characters"):
            check_trigger_id(bad)


def test_a_trigger_that_waited_at_the_broker_too_long_expires_on_arrival():
    """A persistent session delivers triggers sent while the station was away: one possibly older than the
    timeout is answered ERROR, never with the frame of a later part."""
    inbox = TriggerInbox(timeout_s=5.0)
    unknown, away, recent = Waiter(), Waiter(), Waiter()
    inbox.push("kept-from-before-start", 0.0, unknown, now=1000.0)  # sent at an unknown time
    inbox.push("away-8s", 992.0, away, now=1000.0)  # the station lost the broker 8 s ago
    inbox.push("away-2s", 998.0, recent, now=1000.0)
    assert (unknown.outcome, away.outcome, recent.outcome) == ("expired", "expired", None)
    assert inbox.take_for(1000.1).id == "away-2s" and inbox.expired == 2 and inbox.accepted == 3


def test_triggers_waiting_when_the_station_stops_are_told_so():
    inbox = TriggerInbox()
    waiting, late, gave_up = Waiter(), Waiter(), Waiter()
    inbox.push("a", 1.0, waiting)
    inbox.push("b", 1.0, gave_up)
    gave_up.withdrawn = True
    inbox.close("the station is stopping")
    inbox.push("c", 2.0, late)  # arrives while it stops
    assert (waiting.outcome, late.outcome, gave_up.outcome) == ("stopping", "stopping", None)
    assert inbox.take_for(3.0) is None


def test_an_mqtt_trigger_is_answered_error_when_it_gets_no_verdict():
    from unittest import mock

    from edge_ad.publish.session import ReplyRoute
    from edge_ad.service.trigger_answers import MqttAnswer

    publisher = mock.Mock()
    route = ReplyRoute("plc/answers", b"c-1")
    inbox = TriggerInbox(max_pending=1)
    inbox.push(4711, 1.0, MqttAnswer(4711, publisher, route))
    inbox.push("P-2", 1.0, MqttAnswer("P-2", publisher))  # pushes 4711 out
    publisher.publish_trigger_error.assert_called_once_with(
        4711, "dropped", "dropped: 1 triggers waiting for a frame (camera too slow?)", route
    )
    answer = inbox.take_for(1.5).reply
    answer.answered("the verdict")
    publisher.respond_verdict.assert_not_called()  # no response topic: the verdict topic answers
    MqttAnswer(1, publisher, route).answered("the verdict")
    publisher.respond_verdict.assert_called_once_with(route, "the verdict")
    MqttAnswer("P-3", publisher).lost(TriggerRejected("camera", "camera offline: no frame to judge"))
    camera = ("P-3", "camera", "camera offline: no frame to judge", None)
    assert publisher.publish_trigger_error.call_args.args == camera


def test_a_camera_bound_trigger_is_taken_exactly_and_the_ones_before_it_lost_their_frames():
    """Software trigger: the camera says which trigger a frame answers; triggers queued before it will get
    no frame (the camera lost them) and are answered expired at once, not with this frame."""
    inbox = TriggerInbox(timeout_s=5.0)
    first, second = Waiter(), Waiter()
    a = inbox.push("a", 100.0, first)
    b = inbox.push("b", 100.1, second)
    c = inbox.push("c", 100.2)
    assert inbox.take_bound(b, 100.3) is b and first.outcome == "expired" and second.outcome is None
    assert inbox.take_bound(a, 100.4) is None, "a trigger already answered is never taken again"
    assert inbox.take_bound(object(), 100.5) is None, "a frame bound to no waiting trigger answers nothing"
    assert inbox.cancel(c) and not inbox.cancel(c)
    assert (inbox.accepted, inbox.expired) == (2, 1)


def test_triggers_expire_while_no_frame_comes():
    """A triggered camera that takes no frame: waiting triggers are answered expired without any frame."""
    inbox = TriggerInbox(timeout_s=5.0)
    waiter = Waiter()
    inbox.push("a", 100.0, waiter)
    inbox.expire(104.0)
    assert waiter.outcome is None
    inbox.expire(105.5)
    assert waiter.outcome == "expired" and inbox.expired == 1
