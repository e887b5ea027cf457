from __future__ import annotations

import pytest

from edge_ad.service.status import stats_are_current

STATS = {"run": "a1", "camera": "online", "frames": 12}


@pytest.mark.parametrize(
    ("status", "current"),
    [
        ({"state": "online", "run": "a1"}, True),
        ({"state": "camera_offline", "run": "a1"}, True),
        ({"state": "offline", "reason": "connection lost", "run": "a1"}, False),  # the Will of a crashed run
        ({"state": "offline", "reason": "stopped", "run": "a1"}, False),  # the final figures of a stopped run
        ({"state": "online", "run": "b2"}, False),  # a new run, before its first stats
        ({"state": "online"}, False),  # a station from before run ids
    ],
)
def test_stats_are_read_with_the_status_of_the_same_run(status, current):
    """One Will per connection, and it is the status: after a crash the stats still say camera online."""
    assert stats_are_current(status, STATS) is current


def test_final_stats_are_stale_whatever_the_status_says():
    """A run's last stats (clean stop) say stale: a status republished late cannot make them current."""
    assert not stats_are_current({"state": "online", "run": "a1"}, {**STATS, "stale": True})


def test_the_status_screen_says_what_went_missing_where():
    """Trigger and GenICam acquisition counters on the technician's screen (after a storm it said 'none')."""
    from edge_ad.service.status import counter_lines

    stats = {
        "triggers": {"accepted": 300, "rejected": 0, "dropped": 236, "expired": 2},
        "camera_counters": {"incomplete_frames": 3, "lost_triggers": 1, "missing_packets": 40},
    }
    assert counter_lines(stats) == [
        "triggers   accepted 300    rejected 0    dropped 236    expired 2",
        "acquire    incomplete frames 3    lost triggers 1    missing packets 40",
    ]
    assert counter_lines({"frames": 3}) == []
