"""``run_console(config)``: the console under uvicorn, HTTPS with the configured or generated certificate."""

from __future__ import annotations

import logging
import os

import uvicorn

from edge_ad.config import EdgeAdConfig
from edge_ad.console.app import create_app, users_file
from edge_ad.console.tls import ensure_certificate
from edge_ad.console.users import list_users

__all__ = ["run_console"]

logger = logging.getLogger(__name__)


def yield_cpu() -> bool:
    """Schedule every thread of this process SCHED_IDLE (threads started later inherit it from theirs).

    Returns:
        False where the OS has no such policy or refuses it (logged; the console then runs as a normal process).
    """
    try:
        for tid in os.listdir("/proc/self/task"):  # Linux schedules threads, not processes
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError, ValueError) as exc:  # not Linux, or refused
        logger.warning("console: cannot lower its CPU priority (%s); it runs as a normal process", exc)
        return False
    return True


def run_console(config: EdgeAdConfig) -> int:
    """Serve the console on ``console.host:console.port`` until stopped (SIGINT/SIGTERM); returns the exit code.

    Raises:
        ConfigError: The users file or a configured certificate cannot be read.
    """
    console = config.console
    if console.cpu == "idle":
        yield_cpu()  # before any thread of its own: an open console never delays a verdict (BENCHMARKS.md)
    users = users_file(config)
    if not list_users(users):
        logger.warning("console: no users in %s yet; add one with: edge-ad console-user add --config ... NAME", users)
    tls: dict[str, str] = {}
    if console.tls:
        cert, key = ensure_certificate(console, config.service.state_dir)
        tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    logger.info("console: %s on %s (listening on %s)", config.station, console.url, console.host)
    uvicorn.run(
        create_app(config),
        host=console.host,
        port=console.port,
        log_config=None,  # our logging setup (stderr, journald priorities)
        access_log=False,
        proxy_headers=False,  # nobody in front of it: never trust X-Forwarded-For for the login rate limit
        server_header=False,
        timeout_graceful_shutdown=3,  # open /events streams never end by themselves: do not wait on them at stop
        **tls,
    )
    return 0
