"""The inspection loop: grab -> infer -> judge -> publish, until stopped."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from edge_ad.bundle.store import load_private, private_copies
from edge_ad.bundle.trust import Trust
from edge_ad.capture import CaptureSupervisor, EndOfSource
from edge_ad.cases.recorder import CaseRecorder
from edge_ad.cases.store import cases_dir, embedding_space, require_qdrant
from edge_ad.commissioning import load_model
from edge_ad.config import EdgeAdConfig
from edge_ad.config.loader import writable_dir
from edge_ad.errors import BrokerError, CameraError, ModelLoadError
from edge_ad.guard import Guard, RateLimitedLog
from edge_ad.inference import compile_cache
from edge_ad.inference.engine import AnomalyModel, InferPipeline, Scored
from edge_ad.inference.selftest import self_test
from edge_ad.integrity import use_station_key
from edge_ad.opcua import require_asyncua
from edge_ad.publish import MqttPublisher
from edge_ad.publish.session import Delivery
from edge_ad.publish.sparkplug import require_protobuf
from edge_ad.publish.spool import open_spool
from edge_ad.publish.topics import Topics
from edge_ad.service.command_auth import CommandVerifier, command_key
from edge_ad.service.evidence import EvidenceStore
from edge_ad.service.judge import judge
from edge_ad.service.modes import (
    BadTrigger,
    Debouncer,
    TriggerInbox,
    TriggerRejected,
    TriggerReply,
    check_trigger_id,
    parse_trigger,
)
from edge_ad.service.recalibration import RecalibrationRunner
from edge_ad.service.reload import ModelReloader
from edge_ad.service.remote_install import CommandSlot, InstallRunner, RollbackRunner
from edge_ad.service.sdnotify import SystemdNotifier
from edge_ad.service.stats import DriftMonitor, StationStats
from edge_ad.service.trigger_answers import MqttAnswer
from edge_ad.types import Frame

if TYPE_CHECKING:
    from edge_ad.opcua.server import OpcUaServer
    from edge_ad.publish.sparkplug.node import EdgeNode

__all__ = ["Daemon", "run"]

logger = logging.getLogger(__name__)

REPLY = "_reply"  # a trigger's TriggerReply riding along with its frame; taken off before the verdict is made
STOPPING = "the station is stopping"
STATS_EXPIRY_PERIODS = 3  # MQTT 5: retained stats not refreshed for this many stats intervals are dropped


def stats_expiry_s(interval_s: float) -> int:
    """MQTT 5 Message Expiry Interval of the retained stats: a few stats periods, whole seconds, at least 1."""
    return max(1, math.ceil(STATS_EXPIRY_PERIODS * interval_s))


def model_info(model: AnomalyModel) -> dict[str, str]:
    """The ``model`` object of verdicts, status and stats: what judged, in which variant and precision."""
    m = model.bundle.manifest
    return {"name": m.name, "version": m.version, "variant": model.variant_name, "precision": model.precision}


class Daemon:
    """One station: model, camera and publisher wired together.

    Construction does every check that can fail for bad input (bundle, device, camera, state
    directory) before anything is published, so a broken station exits with a clear error.
    """

    def __init__(self, config: EdgeAdConfig) -> None:
        self.config = config
        self.run_id = uuid.uuid4().hex  # in every message of this run: its birth and death match
        self.stop_event = threading.Event()
        self.notifier = SystemdNotifier()
        state_dir = writable_dir(config.service.state_dir, "service.state_dir")
        copies = private_copies(state_dir)
        self.trust = Trust.from_config(config.security, copies)
        use_station_key(self.trust.station)  # MACs the compile cache's ledger and the commissioning records
        bundle = load_private(config.model.path, copies)  # judged from a copy nobody else can write
        self.signature = self.trust.check(bundle)  # refused before it judges a frame
        # the first start of a version commissions it (seconds to a minute): tell systemd and the operator
        self.notifier.extend_start(300, f"loading {bundle.manifest.name} v{bundle.manifest.version} (commissioning)")
        self.model = load_model(bundle, config.model, state_dir)
        self.pipeline = InferPipeline(self.model, config.model.infer_requests)
        evidence = config.evidence
        self.evidence = (
            EvidenceStore(
                evidence,
                writable_dir(evidence.dir or state_dir / "evidence", "evidence.dir"),
                on_alarm=self._disk_alarm_changed,
            )
            if evidence.enabled
            else None
        )
        self.cases: CaseRecorder | None = None
        if config.cases.enabled:
            require_qdrant()
            cases_folder = writable_dir(cases_dir(config), "cases.path")
        if config.sparkplug.enabled:
            require_protobuf()
        if config.opcua.enabled:
            require_asyncua()
        spool = open_spool(state_dir, config.mqtt, on_alarm=self._publish_status)
        service = config.service
        self.triggers = TriggerInbox(timeout_s=service.trigger_timeout_s) if service.mode == "triggered" else None
        self.software_trigger = config.camera.genicam_trigger == "software"  # a trigger fires the camera
        self._rejections = RateLimitedLog(logger)
        self.debouncer = Debouncer(service.debounce.n, service.debounce.m) if service.debounce else None
        topics = Topics(config.station, config.mqtt.prefix)
        handlers = {topics.trigger(): self._on_trigger}  # in free_run too: a trigger is answered ERROR there
        self.recalibration = None
        # the config guarantees a command key and an authenticating broker for every command; one nonce memory
        verifier = (
            CommandVerifier(command_key(config.commands), config.commands.max_age_s)
            if config.recalibration.mqtt_command or config.fleet.accept_installs
            else None
        )
        if config.recalibration.mqtt_command:
            assert verifier is not None
            result_topic = topics.command_result("recalibrate")
            self.recalibration = RecalibrationRunner(
                config,
                verifier,
                lambda payload: self.publisher.publish_event(result_topic, payload),
                respond=lambda route, payload: self.publisher.respond(route, payload),
            )
            handlers[topics.command("recalibrate")] = self.recalibration.on_message
        self.installs: list[InstallRunner | RollbackRunner] = []  # cmd/install and cmd/rollback (fleet)
        if config.fleet.accept_installs:
            assert verifier is not None
            slot = CommandSlot()  # one model-changing command at a time
            for name, kind in (("install", InstallRunner), ("rollback", RollbackRunner)):
                topic = topics.command_result(name)
                runner = kind(
                    config,
                    verifier,
                    lambda payload, topic=topic: self.publisher.publish_event(topic, payload),
                    respond=lambda route, payload: self.publisher.respond(route, payload),
                    trust=self.trust,
                    slot=slot,
                )
                self.installs.append(runner)
                handlers[topics.command(name)] = runner.on_message
        # every thread below runs its callbacks through this guard; its first failure goes on status
        self.guard = Guard(on_alarm=self._publish_status)
        self.publisher = MqttPublisher(
            config.mqtt,
            config.station,
            spool,
            handlers=handlers,
            guard=self.guard,
            run=self.run_id,
            stats_expiry_s=stats_expiry_s(service.stats_interval_s),
        )
        self.sparkplug: EdgeNode | None = None  # its own client and Will; started in run()
        if config.sparkplug.enabled:
            from edge_ad.publish.sparkplug.node import EdgeNode  # protobuf: only with the sparkplug extra

            self.sparkplug = EdgeNode(config.sparkplug, config.mqtt, config.station, state_dir, guard=self.guard)
        self._phase = "starting"  # then serving (the loop runs), then stopping: whether OPC UA triggers are taken
        self.opcua: OpcUaServer | None = None  # its own thread and asyncio loop; started in run()
        if config.opcua.enabled:
            from edge_ad.opcua.server import OpcUaServer  # asyncua: only with the opcua extra

            self.opcua = OpcUaServer(
                config.opcua,
                config.station,
                state_dir,
                accept_trigger=self._accept_trigger,  # refuses with the reason in free_run
                answer_timeout_s=service.trigger_timeout_s + config.opcua.answer_margin_s,
                guard=self.guard,
                on_alarm=self._publish_status,
            )
        self.stats = StationStats()
        self.drift = DriftMonitor(service.drift.window, service.drift.fraction) if service.drift else None
        self.camera = CaptureSupervisor(config.camera, on_state=self._camera_state)  # reports via _status_details
        self.camera.start()
        self.reloader = ModelReloader(
            config.model, state_dir, bundle.source, self._reload_failed, guard=self.guard, trust=self.trust
        )
        self.seq = spool.last_seq()  # continue the sequence across restarts, never reuse a number
        self.scored = 0  # frames judged and published
        self.submitted = 0  # frames handed to the model (some may still be in flight)
        if config.cases.enabled:  # last: its worker reports through the publisher and the camera state
            self.cases = CaseRecorder(config.cases, cases_folder, config.station, on_alarm=self._publish_status)

    def _status_details(self) -> dict:
        return {
            "drift": self.drift.status(self.model.threshold) if self.drift and self.drift.alarm else None,
            "disk": {"alarm": True, "message": self.evidence.alarm}
            if self.evidence is not None and self.evidence.alarm
            else None,
            "cases": self._cases_problem(),
            "faults": self.guard.alarm,
            "spool": self._spool_problem(),
            "opcua": {"alarm": True, "message": self.opcua.alarm} if self.opcua and self.opcua.alarm else None,
            "model": model_info(self.model),
            "device": self.model.device,
            "device_note": self.model.fallback_note,
            "variant_note": self.model.variant_note,
            "commissioning": self.model.commissioning,
            "threshold": self.model.threshold,
            "signature": self.signature.describe(),
        }

    def _spool_problem(self) -> dict | None:
        """Status detail while verdicts cannot be written to the spool database (held in memory)."""
        spool = self.publisher.spool
        if spool.alarm is None:
            return None
        return {"alarm": True, "message": spool.alarm, "in_memory": spool.in_memory, "dropped": spool.dropped}

    def _cases_problem(self) -> dict | None:
        """Why cases are not being remembered (status detail), or None."""
        if self.cases is None:
            return None
        if not self.model.embeds:
            kind = self.model.bundle.manifest.model.type
            return {
                "alarm": True,
                "message": f"model gives no embedding ({kind}): similar-case search needs a PatchCore bundle "
                "exported or recalibrated by this version",
            }
        return {"alarm": True, "message": self.cases.alarm} if self.cases.alarm else None

    def _publish_status(self, reason: str = "") -> None:
        """Retained status: ``online`` or ``camera_offline`` (from the camera), with the current details."""
        state, details = "online" if self.camera.state == "online" else "camera_offline", self._status_details()
        self.publisher.set_status(state, reason, **details)
        if self.opcua is not None:
            self.guard.call("opcua feed", self.opcua.status, state, reason, details)

    def _camera_state(self, state: str, reason: str) -> None:
        self._publish_status(reason)
        if self.sparkplug is not None:
            self.guard.call("sparkplug feed", self.sparkplug.camera, state)

    def _drift_changed(self) -> None:
        assert self.drift is not None
        if self.drift.alarm:
            logger.warning(
                "drift: median OK score %.4g above %.0f%% of the threshold",
                self.drift.median,
                100 * self.drift.fraction,
            )
            self._publish_status("drift: good parts score close to the threshold")
        else:
            logger.info("drift cleared: median OK score %.4g", self.drift.median)
            self._publish_status()

    def _disk_alarm_changed(self) -> None:
        assert self.evidence is not None
        self._publish_status(self.evidence.alarm or "")

    def _reload_failed(self, message: str) -> None:
        self._publish_status(message)

    def _swap_model(self) -> None:
        taken = self.reloader.take()
        if taken is None:
            return
        model, self.signature = taken
        self._handle_all(self.pipeline.drain())  # frames in flight are judged by the model that scored them
        old = self.model.bundle.manifest
        self.model = model
        self.pipeline = InferPipeline(model, self.config.model.infer_requests)
        new = model.bundle.manifest
        logger.info("model swapped: %s v%s -> %s v%s", old.name, old.version, new.name, new.version)
        self._publish_status()
        if self.sparkplug is not None:
            self.guard.call("sparkplug feed", self.sparkplug.model, model_info(model), model.threshold)
        if self.opcua is not None:
            self.guard.call("opcua feed", self.opcua.model, model_info(model), model.threshold)

    def _on_trigger(self, payload: bytes, delivery: Delivery) -> None:
        """An MQTT trigger (network thread): queued for its frame, or answered ERROR now when it cannot be.

        Junk without a readable id is counted and logged, never answered: there is nothing to answer to.
        """
        try:
            part = parse_trigger(payload)
        except BadTrigger as exc:
            if self.triggers is not None:
                self.triggers.reject()
            self._rejections.warning(str(exc), "trigger rejected: %s", exc)
            if exc.part is not None:
                self.publisher.publish_trigger_error(exc.part, "invalid", str(exc), delivery.route)
            return
        answer = MqttAnswer(part, self.publisher, delivery.route)
        try:
            self._queue_trigger(part, answer, delivery.sent_at)
        except TriggerRejected as exc:
            if self.triggers is not None:
                self.triggers.reject()
            self._rejections.warning(exc.kind, "trigger %r refused: %s", part, exc.reason)
            answer.lost(exc)

    def _accept_trigger(self, part: object, reply: TriggerReply) -> None:
        """Queue an OPC UA trigger where MQTT triggers wait (any thread); ``reply`` hears of its verdict.

        Raises:
            TriggerRejected: Not triggered mode, an invalid id, the loop not running, the camera offline.
        """
        self._queue_trigger(part, reply, time.time(), while_starting=False)

    def _queue_trigger(self, part: object, reply: TriggerReply, sent_at: float, while_starting: bool = True) -> None:
        """Queue a trigger sent at ``sent_at`` (the earliest it can have been sent) for the next frame.

        MQTT triggers that arrive while the station starts wait for its first frames (they came in order,
        some kept by the broker meanwhile; no frame in time: they expire); an OPC UA call is refused then
        (``while_starting`` False).

        Raises:
            TriggerRejected: Not triggered mode, an invalid id, the station starting or stopping, the camera offline.
        """
        if self.triggers is None:
            raise TriggerRejected("mode", "the station runs in free_run mode; Trigger needs service.mode: triggered")
        try:
            part_id = check_trigger_id(part)
        except ValueError as exc:
            self.triggers.reject()
            raise TriggerRejected("invalid", str(exc)) from None
        if self._phase == "stopping" or (self._phase == "starting" and not while_starting):
            raise TriggerRejected(
                "stopping" if self._phase == "stopping" else "starting", f"the station is {self._phase}"
            )
        if self.camera.state != "online" and self._phase == "serving":  # starting: its first frame may be coming
            raise TriggerRejected("camera", f"camera {self.camera.state}: no frame to judge")
        queued = self.triggers.push(part_id, sent_at, reply, now=time.time())
        if queued is not None and self.software_trigger:
            try:  # the frame it takes comes back bound to this trigger; a lost one is answered at once
                self.camera.fire(queued, wanted=self.triggers.waiting, lost=self.triggers.give_up)
            except CameraError as exc:
                if self.triggers.cancel(queued):
                    raise TriggerRejected("camera", str(exc)) from None

    def _select(self, frame: Frame) -> dict | None:
        """Verdict extras when this frame is to be scored, else None (free-run Nth frame / triggers)."""
        if self.triggers is not None:
            if self.software_trigger:  # the camera says which trigger made this frame
                part = self.triggers.take_bound(frame.trigger, frame.ts) if frame.trigger is not None else None
            else:
                part = self.triggers.take_for(frame.ts)
            if part is None:
                return None
            return {"trigger": {"id": part.id}, REPLY: part.reply} if part.reply else {"trigger": {"id": part.id}}
        every = self.config.service.every_nth
        return {} if frame.index % every == 0 else None

    def _check_delivery(self) -> None:
        """Liveness means delivery: a dead MQTT thread ends the run so systemd restarts the station.

        Verdicts are on disk in the spool, so nothing is lost; scoring on without delivering would be
        a silent station (the watchdog would keep being fed).

        Raises:
            BrokerError: A delivery thread died.
        """
        if not self.publisher.alive:
            raise BrokerError(
                "mqtt: a delivery thread died; stopping so systemd restarts the station "
                f"({self.publisher.unacknowledged} verdicts kept in the spool)"
            )

    def _publish_stats(self, final: bool = False) -> None:
        """Retained stats; ``final``: the run's last ones, marked stale (docs/mqtt.md#birth-and-death-of-a-run)."""
        self.notifier.status(self._status_line())
        details, snapshot = self._status_details(), self.stats.snapshot()
        if self.sparkplug is not None:
            self.guard.call("sparkplug feed", self.sparkplug.stats, snapshot["fps"], snapshot["ng_rate"])
        if self.opcua is not None:
            self.guard.call("opcua feed", self.opcua.stats, snapshot, sum(self.guard.errors.values()))
        self.publisher.publish_stats(
            {
                **snapshot,
                "dropped_frames": self.camera.dropped,
                "bad_frames": self.camera.bad_frames,
                "camera": self.camera.state,
                "camera_counters": self.camera.counters(),
                "device": details["device"],
                "model": details["model"],
                "spooled": self.publisher.unacknowledged,
                "mqtt_protocol": self.publisher.protocol,
                "spool": {"in_memory": self.publisher.spool.in_memory, "dropped": self.publisher.spool.dropped},
                "evidence": self.evidence.counters() if self.evidence else None,
                "cases": self.cases.counters() if self.cases else None,
                "triggers": {
                    "accepted": self.triggers.accepted,
                    "rejected": self.triggers.rejected,
                    "dropped": self.triggers.dropped,
                    "expired": self.triggers.expired,
                }
                if self.triggers
                else None,
                "commands": self._command_counts(),
                "retained_ignored": self.publisher.retained_ignored,
                "faults": dict(self.guard.errors) or None,
                "compile_cache": {"discarded": compile_cache.discarded()},
                "sparkplug": self.guard.call("sparkplug counters", self.sparkplug.counters) if self.sparkplug else None,
                "opcua": self.guard.call("opcua counters", self.opcua.counters) if self.opcua else None,
            },
            final=final,
        )

    def _command_counts(self) -> dict | None:
        """``stats.commands``: accepted and rejected commands of every kind this station takes, or None."""
        runners = [*([self.recalibration] if self.recalibration else []), *self.installs]
        if not runners:
            return None
        return {"accepted": sum(r.accepted for r in runners), "rejected": sum(r.rejected for r in runners)}

    def _handle_all(self, done: list[Scored]) -> None:
        for scored in done:
            self._handle(scored)
        if done:
            self.notifier.ready(self._status_line)  # after the self-test and the first scored frame

    def _status_line(self) -> str:
        """One line for ``systemctl status``."""
        snap, m = self.stats.snapshot(), self.model.bundle.manifest
        return (
            f"{snap['fps']:.1f} fps, NG {100 * snap['ng_rate']:.1f} %, model {m.name} v{m.version} "
            f"({self.model.variant_name}, {self.model.precision}) on {self.model.device}, camera {self.camera.state}"
        )

    def _handle(self, scored: Scored) -> None:
        """Judge, debounce, keep evidence, publish and count one scored frame."""
        frame, result, extra = scored.frame, scored.result, dict(scored.context)
        reply: TriggerReply | None = extra.pop(REPLY, None)
        manifest, threshold = scored.model.bundle.manifest, scored.model.threshold
        self.seq += 1
        self.scored += 1
        verdict = judge(result, frame, threshold, self.seq, model_info(scored.model))
        if frame.camera is not None:
            extra["camera"] = {"frame_id": frame.camera.frame_id, "timestamp_ns": frame.camera.timestamp_ns}
        if self.debouncer is not None:
            extra["raw_verdict"] = verdict.verdict
            verdict = replace(verdict, verdict="NG" if self.debouncer.update(verdict.verdict == "NG") else "OK")
        if self.evidence is not None and verdict.verdict == "NG":
            path = self.guard.call("evidence", self.evidence.save, frame, result, verdict.seq, threshold)
            if path is not None:
                extra["evidence"] = path
        if self.cases is not None and result.embedding is not None and self.cases.wants(verdict.verdict):
            space = embedding_space(manifest)
            hint = self.cases.hint(result.embedding, space) if verdict.verdict == "NG" else None
            if hint is not None:
                extra["hint"] = hint
            ident = self.cases.remember(verdict, result.embedding, space, extra.get("evidence"))
            if ident is not None:
                extra["case"] = ident
        if extra:
            verdict = replace(verdict, extra=extra)
        self.publisher.publish_verdict(verdict)  # first: a verdict anyone was told is durably spooled for MQTT
        if self.opcua is not None:
            self.guard.call("opcua feed", self.opcua.verdict, verdict)
        if reply is not None:
            self.guard.call("trigger reply", reply.answered, verdict)
        if self.sparkplug is not None:
            self.guard.call("sparkplug feed", self.sparkplug.verdict, verdict)
        self.stats.add(result.latency_ms, verdict.verdict == "NG")
        if self.drift is not None and self.drift.update(result.score, verdict.verdict == "OK", threshold):
            self._drift_changed()
        logger.debug("seq %d %s score %.4f", verdict.seq, verdict.verdict, verdict.score)

    def stop(self, *_: object) -> None:
        """Ask the loop to finish after the current frame (signal-safe)."""
        if not self.stop_event.is_set():
            self.notifier.stopping("signal received")
        self.stop_event.set()

    def run(self) -> int:
        """Score frames until stopped, ``max_frames`` is reached or a finite source ends.

        Returns:
            Process exit code (0 on a clean stop).
        """
        try:
            self_test(self.model, self.config.model.selftest_tolerance)
        except ModelLoadError as exc:
            self.publisher.set_status("error", str(exc), **self._status_details())
            self.publisher.start()
            self.publisher.stop(str(exc))
            self.camera.close()
            raise
        self._publish_status()
        if self.opcua is not None:  # before the broker: OPC UA never waits for MQTT
            self.opcua.model(model_info(self.model), self.model.threshold)
            self.opcua.start()
        self.publisher.start()
        if self.sparkplug is not None:  # born with what judges and the camera's state
            self.sparkplug.model(model_info(self.model), self.model.threshold)
            self.sparkplug.camera(self.camera.state)
            self.sparkplug.start()
        self.reloader.start()
        max_frames = self.config.service.max_frames
        reason = "stopped"
        try:
            interval = self.config.service.stats_interval_s
            next_stats = time.monotonic()  # at once: this run's stats replace the last run's retained ones
            self._phase = "serving"
            while not self.stop_event.is_set():
                self._check_delivery()  # every frame: a dead client is noticed within a second, not a keepalive
                if self.recalibration is not None:
                    self.recalibration.tick()  # a command collecting from a camera gone offline gives up
                if time.monotonic() >= next_stats:
                    self._publish_stats()
                    next_stats = time.monotonic() + interval
                try:
                    frame = self.camera.get(timeout=0.5)
                except EndOfSource:
                    reason = "source exhausted"
                    logger.info("camera %s: end of source after %d frames", self.camera.name, self.scored)
                    break
                if frame is None:
                    self._handle_all(self.pipeline.drain())  # idle camera: nothing stays in flight
                    if self.triggers is not None:
                        self.triggers.expire(time.time())  # a triggered camera that took no frame for it
                    if self.camera.waiting:  # a triggered camera waiting for a part: camera and loop are alive
                        self.notifier.progress()
                        self.notifier.ready(self._status_line)
                    continue
                self.notifier.progress()  # a frame arrived: camera and loop are alive
                if self.triggers is not None:
                    self.notifier.ready(self._status_line)  # triggered: serving once frames flow
                if self.recalibration is not None:
                    self.recalibration.offer(frame)
                extra = self._select(frame)
                if extra is None:
                    continue
                self._swap_model()
                self.submitted += 1
                done = self.pipeline.submit(frame, extra)
                if self.triggers is not None or self.config.model.infer_requests == 1:
                    done += self.pipeline.drain()  # answer now: the PLC waits for this verdict
                self._handle_all(done)
                if max_frames and self.submitted >= max_frames:
                    logger.info("max_frames=%d reached", max_frames)
                    break
            self._handle_all(self.pipeline.drain())
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._phase = "stopping"
            if self.triggers is not None:
                self.triggers.close(STOPPING)  # waiting triggers are answered ERROR before the spool is flushed
            if self.recalibration is not None:
                self.recalibration.join(timeout=30)
            for runner in self.installs:  # a download or commissioning under way: finished or given up
                runner.join(timeout=30)
            self.reloader.close()
            if self.cases is not None:
                self.cases.close()
            self._publish_stats(final=True)
            if self.sparkplug is not None:
                self.guard.call("sparkplug stop", self.sparkplug.stop)  # NDEATH, then the JSON side's final status
            if self.opcua is not None:
                final = "offline" if reason in ("stopped", "source exhausted") else "error"
                self.guard.call("opcua feed", self.opcua.status, final, reason)
                self.guard.call("opcua stop", self.opcua.stop)
            self.publisher.stop(reason)
            self.camera.close()
            logger.info("stopped (%s) after %d verdicts (last seq %d)", reason, self.scored, self.seq)
        return 0


def run(config: EdgeAdConfig) -> int:
    """Run a station in the foreground; SIGTERM and SIGINT stop it cleanly."""
    daemon = Daemon(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, daemon.stop)
    signal.signal(signal.SIGHUP, daemon.reloader.request)
    return daemon.run()
