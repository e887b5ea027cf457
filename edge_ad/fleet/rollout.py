"""A staged rollout of a signed bundle to many stations: canaries first, a soak, then the rest in batches.

Every stage offers the bundle to its stations at once (cmd/install, signed per station), waits for their
final replies and for their retained status to show the new version active, checks the gates
(:mod:`edge_ad.fleet.rollout_gates`) and, for the canaries (and with ``soak_all`` every batch), soaks.
The first failure rolls back every station of that stage that activated the new version (cmd/rollback)
and stops: stations of later stages are never touched. The state file is rewritten after every change
(:mod:`edge_ad.fleet.rollout_plan`), so a stopped or interrupted rollout can be resumed or aborted.
See docs/fleet.md#staged-rollout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from edge_ad.errors import EdgeAdError
from edge_ad.fleet.rollout_gates import current_stats, install_gate, ng_bound, runs_version, soak_violation
from edge_ad.fleet.rollout_plan import INSTALL_FINAL, Rollout, StationRecord

__all__ = ["FAILED", "PASSED", "Link", "Runner", "report"]

PASSED, FAILED = 0, 1  # exit codes; usage and broker errors are 2 (EdgeAdError)
ROLLBACK_FINAL = frozenset({"rolled_back", "error", "rejected"})


class Link(Protocol):
    """What the runner needs of the broker connection (:class:`~edge_ad.fleet.rollout_transport.FleetLink`)."""

    def snapshot(self, station: str) -> tuple[dict | None, dict | None]: ...  # noqa: D102
    def replies(self, command_id: str) -> list[dict]: ...  # noqa: D102
    def send(self, station: str, name: str, command: dict[str, Any], key: bytes) -> None: ...  # noqa: D102
    def wait(self, timeout_s: float) -> None: ...  # noqa: D102
    def new_id(self, rollout: str) -> str: ...  # noqa: D102


class Runner:
    """Runs (or resumes, or aborts) one rollout over a :class:`Link`, saving its state after every change."""

    def __init__(self, rollout: Rollout, link: Link, keys: dict[str, bytes], say: Callable[[str], None] = print):
        self.rollout = rollout
        self.link = link
        self.keys = keys
        self.say = say

    def _save(self, *records: StationRecord) -> None:
        now = time.time()
        for r in records:
            r.updated = now
        self.rollout.save()

    def _status(self, station: str) -> dict:
        return self.link.snapshot(station)[0] or {}

    def run(self) -> int:
        """Run the stages still to do; PASSED when all are done, FAILED when one failed (and was rolled back)."""
        self.rollout.state, self.rollout.reason = "running", ""
        self._save()
        for stage, records in self.rollout.stages():
            name = "canaries" if stage == 0 else f"batch {stage}"
            self.say(f"{name}: {', '.join(r.station for r in records)}")
            reason = self._stage(stage, records)
            if reason:
                self.say(f"{name} failed: {reason}; rolling back and stopping")
                due = [r for r in records if (r.activated or r.unanswered) and r.state != "rolled_back"]
                self._roll_back(due, reason)
                self.rollout.state, self.rollout.reason = "stopped", f"{name}: {reason}"
                self._save()
                return FAILED
        self.rollout.state = "completed"
        self._save()
        return PASSED

    def _stage(self, stage: int, records: list[StationRecord]) -> str | None:
        """Offer, install, gate and (canaries, or every stage with soak_all) soak one stage; why it failed."""
        opts, bundle = self.rollout.options, self.rollout.bundle
        here: list[StationRecord] = []
        for r in records:
            status = self._status(r.station)
            if r.state == "installed" and runs_version(status, bundle, r.new):
                here.append(r)  # resumed: it runs the new version already; gate it again
            elif status.get("state") == "online" and (status.get("model") or {}).get("name") == bundle:
                here.append(r)
            elif opts.allow_offline and r.role == "rest":
                r.state, r.reason = "skipped", f"{status.get('state', 'no status')} when its stage came"
            else:
                r.state, r.reason = "failed", f"{status.get('state', 'no status')} when its stage came"
                self._save(r)
                return f"{r.station} is not online (--allow-offline skips such stations of the rest)"
        self._save(*records)
        for r in here:
            if r.state != "installed":
                self._offer(r)
        reason = self._await_installs(here)
        if reason is None and opts.soak_s > 0 and here and (stage == 0 or opts.soak_all):
            reason = self._soak(here)
        if reason is None:
            for r in here:
                r.state, r.finished_at = "passed", time.time()
            self._save(*here)
        return reason

    def _offer(self, r: StationRecord) -> None:
        status, stats = self.link.snapshot(r.station)
        current = current_stats(status, stats)
        r.baseline_ng_rate = current.get("ng_rate") if current else None
        r.ng_bound = ng_bound(r.baseline_ng_rate, self.rollout.options.max_ng_rate)
        r.previous = ((status or {}).get("model") or {}).get("version")
        r.new, r.activated, r.variant, r.selftest, r.acceptance = None, False, None, None, None
        r.max_ng_rate, r.soak_samples, r.replies, r.rollback, r.reason = None, 0, [], None, ""
        r.command = self.link.new_id(self.rollout.id)
        ro = self.rollout
        command = {"id": r.command, "rollout": ro.id, "bundle": ro.bundle, "version": ro.version,
                   "manifest_sha256": ro.manifest_sha256, "url": ro.url, "size": ro.size, "activate": True}  # fmt: skip
        r.state, r.offered_at = "offered", time.time()
        self._save(r)
        self.link.send(r.station, "install", command, self.keys[r.station])

    def _await_installs(self, records: list[StationRecord]) -> str | None:
        """Wait until every station of the stage is installed (status shows it) or failed; the first failure."""
        timeout = self.rollout.options.install_timeout_s
        waiting = [r for r in records if r.state in ("offered", "installing", "installed")]
        failure: str | None = None
        while waiting:
            for r in list(waiting):
                why = self._install_step(r, time.time() - (r.offered_at or 0) > timeout)
                if r.state == "installed" and why is None and runs_version(self._status(r.station), *self._new(r)):
                    waiting.remove(r)
                elif why is not None:
                    r.state, r.reason, r.finished_at = "failed", why, time.time()
                    self._save(r)
                    self.say(f"{r.station}: {why}")
                    failure = failure or f"{r.station}: {why}"
                    waiting.remove(r)
            if waiting:
                self.link.wait(0.5)
        return failure

    def _new(self, r: StationRecord) -> tuple[str, str | None]:
        return self.rollout.bundle, r.new

    def _install_step(self, r: StationRecord, late: bool) -> str | None:
        """Fold the station's replies into its record; why it failed the install gate (None: fine so far)."""
        if r.state != "installed":
            replies = self.link.replies(r.command or "")
            states = [x.get("state") for x in replies]
            if states != r.replies:
                r.replies = [str(s) for s in states]
                r.state = "installing" if states else r.state
                self._save(r)
            final = next((x for x in replies if x.get("state") in INSTALL_FINAL), None)
            if final is None:
                if not late:
                    return None
                r.new = r.new or self.rollout.version  # a station installs a signed version under its own number
                waited = self.rollout.options.install_timeout_s
                return f"no final install reply within {waited:.0f} s (rolled back in case it installs it later)"
            if final.get("state") == "installed":
                r.new, r.previous = final.get("version"), final.get("previous") or r.previous
                r.activated = final.get("active") is True
                r.variant = final.get("variant")
            r.selftest, r.acceptance = final.get("selftest"), final.get("acceptance")
            why = install_gate(final)
            if why is not None:
                return why
            r.state = "installed"
            self._save(r)
            self.say(f"{r.station}: installed v{r.new} (was v{r.previous}), variant {r.variant}")
        elif r.selftest is not True or r.acceptance is not True:
            return f"installed earlier without passing its gate (selftest {r.selftest}, acceptance {r.acceptance})"
        if late and not runs_version(self._status(r.station), *self._new(r)):
            return f"its status did not show v{r.new} active and online in time"
        return None

    def _soak(self, records: list[StationRecord]) -> str | None:
        """Watch the stage's stations for ``soak_s``: status online on the new version, no drift, NG rate bounded."""
        soak = self.rollout.options.soak_s
        self.say(f"soaking {', '.join(r.station for r in records)} for {soak:g} s")
        for r in records:
            r.state, r.max_ng_rate, r.soak_samples = "soaking", None, 0
        self._save(*records)
        seen: dict[str, set[float]] = {r.station: set() for r in records}
        end = time.monotonic() + soak
        while (left := end - time.monotonic()) > 0:
            for r in records:
                status, stats = self.link.snapshot(r.station)
                why = soak_violation(status, stats, self.rollout.bundle, r.new or "", r.ng_bound or 0.0)
                if why is not None:
                    r.state, r.reason, r.finished_at = "failed", why, time.time()
                    self._save(r)
                    return f"{r.station}: {why}"
                current = current_stats(status, stats)
                fresh = current and current.get("ts") not in seen[r.station]
                if fresh and (current.get("model") or {}).get("version") == r.new:
                    seen[r.station].add(current.get("ts"))
                    r.soak_samples += 1
                    r.max_ng_rate = max(r.max_ng_rate or 0.0, float(current.get("ng_rate") or 0.0))
                    self._save(r)
            self.link.wait(min(left, 0.5))
        for r in records:
            if r.soak_samples == 0:
                r.state, r.reason = "failed", "no stats of the new version during the soak (is --soak shorter than " \
                    "its service.stats_interval_s?)"  # fmt: skip
                self._save(r)
                return f"{r.station}: {r.reason}"
        return None

    def _roll_back(self, records: list[StationRecord], cause: str) -> bool:
        """Send cmd/rollback to every record (from its new version) at once and wait; whether all rolled back."""
        for r in records:
            r.command = self.link.new_id(self.rollout.id)
            command = {"id": r.command, "rollout": self.rollout.id, "from_version": r.new}
            self.link.send(r.station, "rollback", command, self.keys[r.station])
            if r.state != "failed":
                r.reason = f"rolled back with its stage ({cause})"
            self._save(r)
        deadline = time.monotonic() + self.rollout.options.rollback_timeout_s
        waiting = list(records)
        while waiting and time.monotonic() < deadline:
            for r in list(waiting):
                final = next((x for x in self.link.replies(r.command or "") if x.get("state") in ROLLBACK_FINAL), None)
                if final is None:
                    continue
                waiting.remove(r)
                if final.get("state") == "rolled_back":
                    r.state, r.activated = "rolled_back", False
                    r.rollback = f"v{final.get('version')} active again (left v{final.get('previous')})"
                elif final.get("state") == "rejected" and not r.activated:  # it never switched: nothing to undo
                    r.rollback = f"not on v{r.new}: nothing to roll back ({final.get('reason')})"
                else:
                    r.state, r.rollback = "rollback_failed", f"rollback {final.get('state')}: {final.get('reason')}"
                r.finished_at = time.time()
                self._save(r)
                self.say(f"{r.station}: {r.rollback}")
            if waiting:
                self.link.wait(0.5)
        for r in waiting:
            r.state, r.rollback = "rollback_failed", "no rollback reply in time: check the station"
            self._save(r)
        return all(r.state == "rolled_back" for r in records)

    def abort(self) -> int:
        """Roll back every station of the rollout that runs its new version; PASSED when all rolled back."""
        targets = [r for r in self.rollout.stations if runs_version(self._status(r.station), *self._new(r))]
        self.say(f"aborting: rolling back {', '.join(r.station for r in targets) or 'no station'}")
        ok = self._roll_back(targets, "aborted by the operator") if targets else True
        self.rollout.state, self.rollout.reason = "aborted", "aborted by the operator"
        self._save()
        return PASSED if ok else FAILED

    def prepare_resume(self) -> None:
        """Re-check the stations before resuming: who still runs the new version, who must be offered again.

        Raises:
            EdgeAdError: The rollout completed or was aborted.
        """
        if self.rollout.state in ("completed", "aborted"):
            raise EdgeAdError(f"rollout {self.rollout.id} is {self.rollout.state}: nothing to resume; start a new one")
        for r in self.rollout.stations:
            if r.stage < 0:
                continue
            status = self._status(r.station)
            running = runs_version(status, *self._new(r))
            if r.state == "passed":
                if not running and status.get("state") == "online":
                    now = (status.get("model") or {}).get("version")
                    r.state, r.reason = "pending", f"passed before but runs v{now}: offered again"
            elif r.activated and running:
                r.state = "installed"  # it runs the new version: gate (and soak) it again
            else:
                r.state, r.activated = "pending", False
        self._save()


def report(rollout: Rollout) -> str:
    """A table of what happened to every station, the outcome and the state file."""
    rows = [("station", "role", "stage", "state", "versions", "variant", "gates", "reason")]
    for r in rollout.stations:
        versions = f"v{r.previous} -> v{r.new}" if r.new else (f"v{r.previous}" if r.previous else "-")
        gates = []
        if r.selftest is not None or r.acceptance is not None:
            gates.append(f"selftest {_yes(r.selftest)}, acceptance {_yes(r.acceptance)}")
        if r.soak_samples or r.max_ng_rate is not None:
            gates.append(f"NG max {r.max_ng_rate or 0:.3f} <= {r.ng_bound or 0:.3f} ({r.soak_samples} stats)")
        reason = "; ".join(x for x in (r.reason, r.rollback or "") if x) or ("never touched" if not r.touched else "")
        stage = "-" if r.stage < 0 else ("canary" if r.stage == 0 else str(r.stage))
        rows.append((r.station, r.role, stage, r.state, versions, r.variant or "-", "; ".join(gates) or "-", reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows]
    outcome = {
        "completed": "all stations passed",
        "stopped": f"STOPPED: {rollout.reason}",
        "aborted": "aborted: the new version was rolled back",
        "running": "interrupted",
    }[rollout.state]
    lines += ["", f"rollout {rollout.id} ({rollout.bundle} v{rollout.version}): {outcome}", f"state   {rollout.path}"]
    if rollout.state in ("stopped", "running"):
        lines.append(f"next    edge-ad fleet rollout --resume {rollout.path}  (or --abort {rollout.path})")
    return "\n".join(lines)


def _yes(value: bool | None) -> str:
    return {True: "ok", False: "FAIL", None: "?"}[value]
