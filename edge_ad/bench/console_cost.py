"""What the technician console costs the daemon: model latency without and with ``edge-ad console``.

Issue 24: with the console open and the live page streaming, the daemon's model p99 may rise by at
most 5 %. One daemon runs for the whole measurement (a replay camera, one broker); its run is cut into
blocks that alternate without (A) and with (B) the console — A B A B ... —, so the machine's drift and
the daemon's own state fall on both sides alike. For a B block ``edge-ad console`` starts (HTTPS with its
self-signed certificate, scheduled ``console.cpu: idle`` as it is by default)
and :data:`CLIENTS` logged-in clients stream ``GET /events``, reading and counting every event: what an
open live page's ``EventSource`` does (the first client also loads the live page first). The clients
run in this process, on the same cores as the daemon, as a browser on the station's panel PC would.
A block is measured after ``settle_s`` (the console started, the streams open) and the console stops
after it.

The model latency is the daemon's own (``latency_ms`` of each verdict), assigned to a block by the
verdict's ``ts``; p50 and p99 are taken over the pooled verdicts of all blocks of a kind. The ratio's
95 % interval is a bootstrap over those verdicts; the ratio of each B block to the A block before it,
and the spread of the A blocks' own p99 (largest ÷ smallest), show the noise. The console's peak RSS
is its ``VmHWM``, its CPU its ``utime + stime`` over the block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.bench.browser import browser_missing, headless_chromium, idle_priority
from edge_ad.bench.endtoend import VerdictRecorder, copy_frames, station_config, vm_hwm_kb
from edge_ad.bench.mosquitto import Broker, free_port, start_mosquitto, stop_process, wait_for_port
from edge_ad.errors import ConfigError, EdgeAdError

__all__ = [
    "BOUND",
    "CLIENTS",
    "INSTALL_HINT",
    "bench_console_cost",
    "console_cost_markdown",
    "count_sse",
    "p99_ratio",
    "pass_order",
]

BOUND = 0.05  # the limit: model p99 with the console ≤ 1.05 × without
CLIENTS = ("live-page", "second-page")
INSTALL_HINT = "pip install 'edge_ad[console]' httpx"
RESAMPLES = 2000
STEAL_LIMIT = 0.005  # of a block's CPU time taken by the host: the block is disturbed (see undisturbed_pairs)
WARMUP = 20  # verdicts before the first block (compilation, connections)


def pass_order(pairs: int) -> list[bool]:
    """Which passes run the console: A B A B ... (``pairs`` of each, the console-free pass first)."""
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    return [False, True] * pairs


def count_sse(lines: Iterator[str], counts: dict[str, int], stop: threading.Event | None = None) -> None:
    """Count the server-sent events in ``lines`` by kind (``event:`` name; ``keepalive`` for comment lines).

    An event counts once its ``data:`` line has arrived. Returns at the end of the stream, or at the
    first line after ``stop`` is set.
    """
    kind = None
    for line in lines:
        if stop is not None and stop.is_set():
            return
        if line.startswith("event: "):
            kind = line.removeprefix("event: ").strip()
        elif line.startswith("data: ") and kind:
            counts[kind] = counts.get(kind, 0) + 1
            kind = None
        elif line.startswith(":"):
            counts["keepalive"] = counts.get("keepalive", 0) + 1


def p99_ratio(
    without: np.ndarray, with_console: np.ndarray, bound: float = BOUND, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Model p50/p99 of both kinds of pass, p99 with ÷ p99 without, its bootstrap 95 % interval and the verdict.

    ``met`` is whether the measured ratio is at most ``1 + bound``; ``resolved`` whether the whole
    interval is on one side of it (otherwise the difference is within the noise of this many verdicts).
    """
    without, with_console = np.asarray(without, float), np.asarray(with_console, float)
    if without.size == 0 or with_console.size == 0:
        raise ValueError("p99_ratio needs latencies of both kinds of pass")
    ratio = float(np.percentile(with_console, 99) / np.percentile(without, 99))
    rng = np.random.default_rng(seed)
    a = np.percentile(without[rng.integers(0, without.size, (resamples, without.size))], 99, axis=1)
    b = np.percentile(with_console[rng.integers(0, with_console.size, (resamples, with_console.size))], 99, axis=1)
    low, high = (float(x) for x in np.percentile(b / a, [2.5, 97.5]))
    limit = 1 + bound
    return {
        "without_p50_ms": float(np.percentile(without, 50)),
        "without_p99_ms": float(np.percentile(without, 99)),
        "with_p50_ms": float(np.percentile(with_console, 50)),
        "with_p99_ms": float(np.percentile(with_console, 99)),
        "p99_ratio": ratio,
        "p99_ratio_ci": [low, high],
        "p50_ratio": float(np.percentile(with_console, 50) / np.percentile(without, 50)),
        "bound": bound,
        "met": ratio <= limit,
        "resolved": high <= limit or low > limit,
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (``/proc/<pid>/stat``); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _Client(threading.Thread):
    """A logged-in browser session streaming ``/events`` (httpx) and counting what it receives."""

    def __init__(self, url: str, name: str, password: str, live_page: bool, idle: bool = False) -> None:
        super().__init__(name=f"console-cost-{name}", daemon=True)
        self.url, self.user, self.password, self.live_page, self.idle = url, name, password, live_page, idle
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        self.streaming = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request in the bench's output
        try:
            if self.idle:  # this thread only: the bench's verdict recorder stays normal
                idle_priority()
            # verify=False: the console's self-signed certificate; the read timeout outlasts a keepalive
            with httpx.Client(base_url=self.url, verify=False, timeout=httpx.Timeout(10, read=60)) as client:
                found = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
                if found is None:
                    raise EdgeAdError("no CSRF field on the login page")
                form = {"username": self.user, "password": self.password, "csrf": found.group(1)}
                response = client.post("/login", data=form)
                if response.status_code != 303:
                    raise EdgeAdError(f"login answered {response.status_code}")
                if self.live_page and client.get("/").status_code != 200:
                    raise EdgeAdError("the live page did not load")
                with client.stream("GET", "/events") as response:
                    if response.status_code != 200:
                        raise EdgeAdError(f"/events answered {response.status_code}")
                    self.streaming.set()
                    count_sse(response.iter_lines(), self.counts, self.stop)
        except Exception as exc:  # the console stopping under the stream ends it with a read error
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.streaming.set()


@contextlib.contextmanager
def _console(config: Path, url: str, port: int, log: Path) -> Iterator[subprocess.Popen]:
    """``edge-ad console --config`` until it listens; SIGTERM afterwards (our own pid only)."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ad.cli", "console", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                how = f"exited with {proc.returncode}" if proc.returncode is not None else "did not listen in 30 s"
                tail = log.read_text(errors="replace").strip()[-800:]
                raise EdgeAdError(f"console cost: edge-ad console {how} ({url}); its log ends:\n{tail}")
            with contextlib.suppress(TimeoutError):
                wait_for_port("127.0.0.1", port, timeout=0.5)
                break
        yield proc
    finally:
        stop_process(proc, 10)


def _steal_s() -> float:
    """CPU time the hypervisor gave to others while this guest wanted it (``/proc/stat``), summed over cores."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _measured(block_s: float) -> tuple[float, float, float]:
    """Wait out one measured block: its start and end (wall clock) and the steal time within it."""
    steal, start = _steal_s(), time.time()
    time.sleep(block_s)
    return start, time.time(), _steal_s() - steal


def _block(
    verdicts: VerdictRecorder, start: float, end: float, steal_s: float, console: bool, extra: dict[str, Any]
) -> dict:
    got = [(arrived, v) for arrived, v in list(verdicts.arrivals) if start <= v.get("ts", 0.0) <= end]
    model = np.array([v["latency_ms"] for _, v in got], float)
    e2e = np.array([(arrived - v["ts"]) * 1000 for arrived, v in got], float)
    if model.size == 0:
        raise EdgeAdError("console cost: no verdicts in a block; is the daemon judging?")
    return {
        "console": console,
        "received": int(model.size),
        "model_p50_ms": float(np.percentile(model, 50)),
        "model_p99_ms": float(np.percentile(model, 99)),
        "e2e_p99_ms": float(np.percentile(e2e, 99)),
        "load_1min": os.getloadavg()[0],  # others on the cores make p99 noisy: shown per block
        "steal_ms": 1000 * steal_s,  # and so does the host, taking a core from this guest
        "model_ms": model.tolist(),
        **extra,
    }


class _StreamClients:
    """The open pages as httpx clients (threads of this process) streaming ``/events`` and counting events."""

    def __init__(self, names: tuple[str, ...], password: str, idle: bool) -> None:
        self.names, self.password, self.idle = names, password, idle
        self.clients: list[_Client] = []

    def open(self, url: str) -> None:
        self.clients = [_Client(url, n, self.password, i == 0, self.idle) for i, n in enumerate(self.names)]
        for client in self.clients:
            client.start()
        for client in self.clients:
            client.streaming.wait(30)
        failed = [f"{c.user}: {c.error}" for c in self.clients if c.error or not c.streaming.is_set()]
        if failed:
            raise EdgeAdError(f"console cost: a client could not open the live stream ({'; '.join(failed)})")

    def mark(self) -> None:
        """The measured block starts (the clients count from their stream's start)."""

    def finish(self) -> None:
        for client in self.clients:
            client.stop.set()

    def events(self, log: Path) -> dict[str, dict[str, int]]:
        """Once the console has stopped (every stream ends): what each client received."""
        for client in self.clients:
            client.join(15)
        errors = [f"{c.user}: {c.error}" for c in self.clients if c.error]
        if errors:
            tail = log.read_text(errors="replace").strip()[-800:]
            failed = "; ".join(errors)
            raise EdgeAdError(f"console cost: a live stream failed ({failed}); the console's log ends:\n{tail}")
        return {c.user: dict(c.counts) for c in self.clients}


_SHOWN_SEQ = "const td = document.querySelector('#verdicts tr td:nth-child(2)'); return td ? td.textContent : null;"


class _LivePage:
    """The live page in a real headless Chromium (one tab, the first user), kept for the whole run.

    A B block logs in and opens the live page; counts the verdicts it showed (the newest row's ``seq``
    at the block's end minus at its start); leaves for ``about:blank`` before the console stops.
    """

    def __init__(self, driver, name: str, password: str) -> None:
        self.driver, self.name, self.password = driver, name, password
        self.first: int | None = None
        self.shown = 0

    def _seq(self) -> int | None:
        value = self.driver.execute_script(_SHOWN_SEQ)
        return int(value) if value and value.isdigit() else None

    def _wait(self, condition, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise EdgeAdError(f"console cost: the browser {what} in {timeout:g} s")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        from selenium.webdriver.common.by import By

        driver = self.driver
        driver.get(f"{url}/login")
        driver.find_element(By.NAME, "username").send_keys(self.name)
        driver.find_element(By.NAME, "password").send_keys(self.password)
        driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
        self._wait(lambda: driver.current_url.rstrip("/") == url, "was not logged in to the live page")
        self._wait(lambda: self._seq() is not None, "showed no verdict on the live page")

    def mark(self) -> None:
        self.first = self._seq()

    def finish(self) -> None:
        last = self._seq()
        self.shown = last - self.first if last is not None and self.first is not None else 0
        self.driver.get("about:blank")  # the page closes before the console stops: no reconnecting

    def events(self, log: Path) -> dict[str, dict[str, int]]:
        return {self.name: {"verdict": self.shown}}


def steal_limit_ms(block_s: float) -> float:
    """The steal time over which a block of ``block_s`` counts as disturbed: :data:`STEAL_LIMIT` of its CPU time."""
    return STEAL_LIMIT * block_s * (os.cpu_count() or 1) * 1000


def undisturbed_pairs(rows: list[dict[str, Any]], block_s: float) -> tuple[list[dict[str, Any]], list[int]]:
    """The blocks of the pairs (A, B) the host left alone, and the numbers (1, 2, ...) of the pairs it did not.

    A block whose steal time exceeds :data:`STEAL_LIMIT` of its CPU time (the hypervisor ran something
    else on this guest's cores) says nothing about the console; its whole pair goes, so both kinds
    keep the same share of the run. When every pair was disturbed, all are kept.
    """
    limit_ms = steal_limit_ms(block_s)
    kept: list[dict[str, Any]] = []
    dropped: list[int] = []
    for number, pair in enumerate(zip(rows[0::2], rows[1::2], strict=True), 1):
        if any(row.get("steal_ms", 0.0) > limit_ms for row in pair):
            dropped.append(number)
        else:
            kept.extend(pair)
    return (kept, dropped) if kept else (rows, [])


def _console_block(
    verdicts: VerdictRecorder, config: Path, workdir: Path, url: str, port: int,
    pages: _StreamClients | _LivePage, block_s: float, settle_s: float,
) -> dict[str, Any]:  # fmt: skip
    """A B block: the console up, its pages open and streaming, then ``block_s`` measured."""
    log = workdir / "console.log"
    with _console(config, url, port, log) as proc:
        pages.open(url)
        time.sleep(settle_s)
        pages.mark()
        cpu_before = _cpu_seconds(proc.pid) or 0.0
        start, end, steal_s = _measured(block_s)
        cpu = (_cpu_seconds(proc.pid) or cpu_before) - cpu_before
        console_kb = vm_hwm_kb(proc.pid) or 0
        time.sleep(0.5)  # the block's last verdicts reach the pages
        pages.finish()
    events = pages.events(log)
    if any(counts.get("verdict", 0) == 0 for counts in events.values()):
        raise EdgeAdError(f"console cost: a page received no verdict ({events}): the measurement is invalid")
    cost = {"events": events, "console_peak_rss_mb": console_kb / 1024, "console_cpu_s": cpu,
            "console_cpu_share": cpu / (end - start)}  # fmt: skip
    return _block(verdicts, start, end, steal_s, True, cost)


@contextlib.contextmanager
def _daemon(config: Path, workdir: Path, broker: Broker) -> Iterator[VerdictRecorder]:
    """``edge-ad run`` for the whole measurement, once it judges; stopped with SIGTERM afterwards."""
    verdicts = VerdictRecorder(broker.host, broker.port)
    log = workdir / "daemon.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "edge_ad.cli", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=sink)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(verdicts.arrivals) < WARMUP and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(verdicts.arrivals) < WARMUP:
            tail = log.read_text(errors="replace").strip()[-500:]
            raise EdgeAdError(f"console cost: the daemon did not start judging: {tail}")
        yield verdicts
    finally:
        stop_process(proc, 30)
        verdicts.close()


def bench_console_cost(
    bundle: Path,
    images: list[Path],
    variant: str,
    block_s: float = 20.0,
    fps: float = 20.0,
    pairs: int = 4,
    clients: tuple[str, ...] = CLIENTS,
    tls: bool = True,
    settle_s: float = 3.0,
    idle: bool = True,
    browser: str = "httpx",
    browser_cpu: str = "normal",
) -> dict[str, Any]:
    """The daemon's model latency in ``pairs`` blocks without and ``pairs`` with the console and its live pages.

    ``browser``: ``httpx`` (the ``clients`` stream ``/events`` from threads of this process) or
    ``chromium`` (the live page open in a real headless Chromium, logged in as the first of ``clients``,
    settled 3 s longer); ``browser_cpu``: ``normal`` (a browser on the station's own PC) or ``idle``
    (``SCHED_IDLE``: a browser on another device, or a kiosk browser run idle). ``clients`` (no
    clients: the console's MQTT feed alone), ``tls`` (False: plain HTTP on loopback) and ``idle``
    (False: ``console.cpu: normal``) are for finding where a cost comes from.

    Returns ``{"skipped": reason}`` when the console extra (or httpx, or the browser) is not installed.

    Raises:
        EdgeAdError: The daemon or the console failed, or a client received no verdict events.
    """
    from edge_ad.console import require_console

    try:
        require_console()
        import httpx  # noqa: F401
    except (ConfigError, ImportError):
        return {"skipped": f"the console extra or httpx is not installed: {INSTALL_HINT}"}
    if browser not in ("httpx", "chromium") or browser_cpu not in ("normal", "idle"):
        raise ValueError(f"console cost: browser {browser!r} / {browser_cpu!r}: httpx|chromium and normal|idle")
    if browser == "chromium" and (missing := browser_missing()):
        return {"skipped": missing}
    from edge_ad.console.users import add_user

    order = pass_order(pairs)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-ad-console-cost-") as tmp:
        workdir = Path(tmp)
        frames_dir = workdir / "frames"
        copy_frames(images, frames_dir)
        users, port, password = workdir / "console-users.json", free_port(), secrets.token_urlsafe(16)
        for name in clients:
            add_user(users, name, password, "viewer")
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        console = {"host": "127.0.0.1", "port": port, "users_file": str(users), "tls": tls,
                   "cpu": "idle" if idle else "normal"}  # fmt: skip
        if browser == "chromium":
            settle_s += 3  # the page's own start
        frames = int(fps * len(order) * (block_s + settle_s + 15)) + 1000  # never the end of the run
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(start_mosquitto(workdir))
            config = station_config(workdir, bundle, variant, frames_dir, broker.port, fps, frames, console=console)
            if browser == "chromium":
                driver = stack.enter_context(headless_chromium(idle=browser_cpu == "idle"))
                pages: _StreamClients | _LivePage = _LivePage(driver, clients[0], password)
            else:
                pages = _StreamClients(clients, password, idle=browser_cpu == "idle")
            verdicts = stack.enter_context(_daemon(config, workdir, broker))
            for with_console in order:
                if with_console:
                    rows.append(_console_block(verdicts, config, workdir, url, port, pages, block_s, settle_s))
                else:
                    time.sleep(settle_s)
                    rows.append(_block(verdicts, *_measured(block_s), False, {}))
    kept, dropped = undisturbed_pairs(rows, block_s)
    pooled = {kind: np.concatenate([r["model_ms"] for r in kept if r["console"] is kind]) for kind in (False, True)}
    a_blocks = [r["model_p99_ms"] for r in kept if not r["console"]]
    b_rows = [r for r in kept if r["console"]]
    return {
        "variant": variant,
        "block_s": block_s,
        "fps": fps,
        "pairs": pairs,
        "clients": 1 if browser == "chromium" else len(clients),
        "browser": browser,
        "browser_cpu": browser_cpu,
        "tls": tls,
        "cpu": "idle" if idle else "normal",
        "passes": rows,
        "dropped_pairs": dropped,
        **p99_ratio(pooled[False], pooled[True]),
        "pair_p99_ratios": [b / a for a, b in zip(a_blocks, [r["model_p99_ms"] for r in b_rows], strict=True)],
        "a_p99_spread": max(a_blocks) / min(a_blocks),  # the A blocks alone: the noise
        "console_peak_rss_mb": max(r["console_peak_rss_mb"] for r in b_rows),
        "console_cpu_share": float(np.mean([r["console_cpu_share"] for r in b_rows])),
        "verdict_events": min((c.get("verdict", 0) for r in b_rows for c in r["events"].values()), default=None),
    }


def _dropped_text(dropped: list[int], block_s: float) -> str:
    if not dropped:
        return ""
    return (f" Pairs {', '.join(map(str, dropped))} left out of these figures: the host took more than "
            f"{steal_limit_ms(block_s):.0f} ms of a block's CPU time (the *steal* column).")  # fmt: skip


def _pages_text(cost: dict[str, Any]) -> str:
    where = "at idle priority" if cost.get("browser_cpu") == "idle" else "at normal priority"
    if cost.get("browser") == "chromium":
        return f"the live page open in a headless Chromium {where} (verdicts shown per block)"
    clients = f"{cost['clients']} logged-in httpx clients {where}"
    return f"{clients} streaming `/events`, the first after loading the live page"


def console_cost_markdown(cost: dict[str, Any]) -> list[str]:
    """The console-cost lines of the bench's Markdown (or the line saying why it was skipped)."""
    if "skipped" in cost:
        return ["", f"Console cost: skipped — {cost['skipped']}."]
    low, high = cost["p99_ratio_ci"]
    limit = 1 + cost["bound"]
    verdict = "met" if cost["met"] else "**not met**"
    if not cost["resolved"]:
        verdict += f" (the interval straddles {limit:.2f}: within the noise of these verdicts)"
    pairs = ", ".join(f"{r:.2f}" for r in cost["pair_p99_ratios"])
    lines = [
        "",
        f"Console cost ({cost['variant']}, one daemon at {cost['fps']:g} fps, {cost['pairs']} × 2 blocks A B … of "
        f"{cost['block_s']:g} s; B: `edge-ad console` (`console.cpu: {cost.get('cpu', 'idle')}`) over "
        f"{'HTTPS' if cost.get('tls', True) else 'HTTP'} with " + _pages_text(cost) + "):",
        "",
        "| daemon | model p50 ms | model p99 ms | console peak RSS MB | console CPU % of a core |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| without console (A) | {cost['without_p50_ms']:.2f} | {cost['without_p99_ms']:.2f} | — | — |",
        f"| with console + live pages (B) | {cost['with_p50_ms']:.2f} | {cost['with_p99_ms']:.2f} | "
        f"{cost['console_peak_rss_mb']:.0f} | {100 * cost['console_cpu_share']:.1f} |",
        "",
        f"p99 with ÷ without: **{cost['p99_ratio']:.3f}** [95 % bootstrap {low:.3f}, {high:.3f}] (p50 "
        f"{cost['p50_ratio']:.3f}); bound ≤ {limit:.2f}: {verdict}."
        + f" Each B block ÷ the A block before it: {pairs} (median "
        f"{float(np.median(cost['pair_p99_ratios'])):.2f}); the A blocks alone spread {cost['a_p99_spread']:.2f}× "
        "(largest ÷ smallest p99)." + _dropped_text(cost.get("dropped_pairs", []), cost["block_s"]),
        "",
        "| block | console | model p50 ms | model p99 ms | e2e p99 ms | load (1 min) | steal ms | "
        "events per client (verdict/state/keepalive) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for i, row in enumerate(cost["passes"], 1):
        events = (
            ", ".join(
                f"{c.get('verdict', 0)} / {c.get('state', 0)} / {c.get('keepalive', 0)}" for c in row["events"].values()
            )
            if row["console"]
            else "—"
        )
        lines.append(
            f"| {i} | {'B' if row['console'] else 'A'} | {row['model_p50_ms']:.2f} | {row['model_p99_ms']:.2f} | "
            f"{row['e2e_p99_ms']:.2f} | {row.get('load_1min', float('nan')):.2f} | "
            f"{row.get('steal_ms', float('nan')):.0f} | {events} |"
        )
    return lines
