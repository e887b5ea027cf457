"""The daemon speaks systemd's notify protocol: READY, STATUS, watchdog pings tied to progress, STOPPING."""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from edge_ad.service.sdnotify import SystemdNotifier
from tests.support.mjpeg import serve_mjpeg
from tests.support.notify import NotifySocket
from tests.support.station import station_config
from tests.support.tiny_bundle import good_image

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("abstract", [True, False], ids=["abstract-socket", "path-socket"])
def test_ready_watchdog_status_stopping_and_no_pings_while_camera_hangs(tiny_models, mosquitto, tmp_path, abstract):
    notify = NotifySocket(abstract, tmp_path)
    with serve_mjpeg([good_image(s) for s in range(4)], fps=20) as camera:
        config = station_config(
            tmp_path, camera.url, tiny_models / "tiny", mosquitto.port,
            camera={"open_timeout_s": 2, "stall_timeout_s": 2}, service={"stats_interval_s": 1},
            model={"variant": "fp32"},
        )  # fmt: skip
        proc = notify.start_daemon(config, watchdog_usec=600_000)  # 0.6 s: ping every 0.2 s
        try:
            notify.collect(8)
            ready = notify.with_key("READY")
            assert len(ready) == 1 and ready[0][1]["READY"] == "1", notify.messages
            assert "model tiny v1 (fp32, f32) on CPU" in ready[0][1]["STATUS"]
            pings = [t for t, m in notify.with_key("WATCHDOG") if t > ready[0][0]]
            assert len(pings) >= 10, f"expected regular pings, got {len(pings)}"
            assert max(b - a for a, b in itertools.pairwise(pings)) < 0.6
            assert any("fps" in m["STATUS"] for _, m in notify.with_key("STATUS")[1:])

            camera.hang()  # connection open, no frames: the loop makes no progress
            hung_at = time.monotonic()
            notify.collect(5)
            late = [t for t, m in notify.with_key("WATCHDOG") if t > hung_at + 0.7]
            assert late == [], f"{len(late)} watchdog pings while the camera sent nothing"
        finally:
            proc.send_signal(signal.SIGTERM)
            notify.collect(3)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    stopping = notify.with_key("STOPPING")
    assert stopping and stopping[0][1]["STOPPING"] == "1"


def test_notifier_is_silent_outside_systemd_and_ignores_foreign_watchdogs():
    assert not SystemdNotifier({}).enabled
    assert SystemdNotifier({}).notify("READY=1") is False
    other = SystemdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_s is None  # the watchdog belongs to another process
    assert SystemdNotifier({"WATCHDOG_USEC": "2000000"}).watchdog_s == 2.0
