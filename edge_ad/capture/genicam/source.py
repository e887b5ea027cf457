"""A GigE Vision or USB3 Vision camera as a frame source: buffer pool, triggers, liveness, stream statistics.

Frames come from Aravis' stream in the order the camera took them. Incomplete buffers (lost packets that
resends did not recover) are counted and dropped, never judged. Each frame carries the camera's own frame
id and timestamp.

Software trigger: :meth:`GenicamSource.fire` hands the trigger to :class:`.triggers.SoftwareTrigger`, which
fires one at a time from its own thread and binds each frame to the trigger that made the camera take it.

A probe thread reads a register once a second: a camera that answers neither with frames nor with
registers for ``liveness_timeout_s`` is offline (the supervisor reopens it).
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

from edge_ad.capture.genicam.aravis import aravis, describe_error
from edge_ad.capture.genicam.features import FeatureWriter, apply_settings
from edge_ad.capture.genicam.pixels import SUPPORTED, to_bgr
from edge_ad.capture.genicam.triggers import Lost, Queued, SoftwareTrigger, Wanted
from edge_ad.capture.poll import IDLE, Idle
from edge_ad.config.camera import CameraConfig, GenicamConfig, genicam_device
from edge_ad.errors import CameraError
from edge_ad.guard import RateLimitedLog
from edge_ad.types import CameraStamp, Frame

__all__ = ["STREAM_COUNTERS", "GenicamSource", "camera_label", "open_camera"]

logger = logging.getLogger(__name__)

POP_TIMEOUT_US = 200_000  # read() returns IDLE this often while no frame comes (triggered cameras)
PROBE_PERIOD_S = 1.0
# Aravis stream statistics reported in the station's stats (GigE: packet resends; all: buffers)
STREAM_COUNTERS = {
    "missing_frames": "n_missing_frames",
    "underruns": "n_underruns",
    "missing_packets": "n_missing_packets",
    "resend_requests": "n_resend_requests",
    "resent_packets": "n_resent_packets",
}


def camera_label(camera: Any, ident: str) -> str:
    """How logs and errors name a camera: vendor, model, serial (and the id it was opened by, if another)."""
    try:
        serial = str(camera.get_device_serial_number() or camera.get_device_id())
        label = f"{camera.get_vendor_name()} {camera.get_model_name()} SN {serial}"
    except Exception:
        return ident or "the first GenICam camera"
    return label if ident in ("", serial) else f"{label} ({ident})"


def open_camera(ident: str) -> Any:
    """An ``Aravis.Camera`` by device id, user-defined name, IP or MAC ("" opens the first one found).

    Raises:
        CameraError: No such camera is visible.
    """
    Aravis = aravis()
    try:
        return Aravis.Camera.new(ident or None)
    except Exception as exc:
        what = f"GenICam camera {ident!r}" if ident else "GenICam camera"
        raise CameraError(
            f"camera.source: no {what} answers ({describe_error(exc)}); check its power, cable and network "
            "('edge-ad cameras' lists the cameras this PC sees)"
        ) from None


class GenicamSource:
    """A configured, acquiring GenICam camera.

    Raises:
        CameraError: The camera is not found, is in use by another application, or refuses a setting.
    """

    def __init__(self, config: CameraConfig) -> None:
        Aravis = aravis()
        ident = genicam_device(config.source) or ""
        self.settings = config.genicam or GenicamConfig()
        self.live = self.settings.trigger == "free_run"  # triggered frames are parts: none is dropped
        self.camera = open_camera(ident)
        self.device = self.camera.get_device()
        self.name = camera_label(self.camera, ident)
        self.gige = bool(self.camera.is_gv_device())
        if self.gige and not self.device.is_controller():
            raise CameraError(
                f"camera.source: {self.name} is in use by another application (it holds the camera's control "
                "channel); close the vendor viewer or the other station using it"
            )
        self._writer = FeatureWriter(self.device, self.name)
        self.bad_frames = 0  # incomplete or unreadable buffers, dropped
        self._count = 0
        self.trigger: SoftwareTrigger | None = None  # software-trigger mode, once acquiring
        self._lost_control = False
        self._gone = False  # the camera stopped answering: closing does not talk to it
        self._answered = time.monotonic()
        self._stop = threading.Event()
        self._log = RateLimitedLog(logger)
        self.stream: Any = None
        self._handler: int | None = None
        try:
            self._configure(Aravis, config)
            self._handler = self.device.connect("control-lost", self._on_control_lost)
            self.stream = self.camera.create_stream(None, None)
            if self.gige:  # a socket buffer of a whole frame: a burst of packets must not overflow the kernel's
                self.stream.set_property("socket-buffer", Aravis.GvStreamSocketBuffer.AUTO)
            payload = self.camera.get_payload()
            for _ in range(self.settings.buffers):
                self.stream.push_buffer(Aravis.Buffer.new_allocate(payload))
            self.camera.start_acquisition()
            if self.settings.trigger == "software":
                execute = partial(self._writer.execute, "trigger", "TriggerSoftware")
                self.trigger = SoftwareTrigger(execute, self.settings.frame_timeout_s, self.name)
        except CameraError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise CameraError(f"camera.source: {self.name} cannot start acquisition: {describe_error(exc)}") from None
        self._probe = threading.Thread(target=self._probe_loop, name="camera-probe", daemon=True)
        self._probe.start()

    def _configure(self, Aravis: Any, config: CameraConfig) -> None:
        apply_settings(self._writer, self.settings, config.fps)
        name = str(self.camera.get_pixel_format_as_string() or "an unknown pixel format")
        if name not in SUPPORTED:
            raise CameraError(
                f"camera.genicam.pixel_format: {self.name} sends {name}, which edge_ad does not read; "
                f"set one of {', '.join(SUPPORTED)}"
            )
        self.pixel_format = (int(self.camera.get_pixel_format()), name)
        if not self.gige:
            return
        address = self.device.get_device_address()
        if (
            address is not None and address.get_address().get_is_loopback()
        ):  # a raw packet socket never sees loopback traffic
            self.device.set_stream_options(Aravis.GvStreamOption.PACKET_SOCKET_DISABLED)
        if self.settings.packet_size is not None:
            self._writer.set("packet_size", "GevSCPSPacketSize", self.settings.packet_size)
        else:
            self.camera.gv_auto_packet_size()
        try:  # always, 0 too: a delay left in the camera by an earlier configuration is reset
            self.camera.gv_set_packet_delay(self.settings.packet_delay_ns)
        except Exception as exc:
            raise CameraError(
                f"camera.genicam.packet_delay_ns: {self.name} refused {self.settings.packet_delay_ns} ns: "
                f"{describe_error(exc)}"
            ) from None

    def _on_control_lost(self, _device: Any) -> None:
        self._lost_control = True

    def _probe_loop(self) -> None:
        """Read a bootstrap register once a second; an answer proves the camera is there."""
        while not self._stop.wait(PROBE_PERIOD_S):
            try:
                self.device.read_register(0)
            except Exception:
                continue  # not answered: the reader judges how long that has lasted
            self._answered = time.monotonic()

    def _check_alive(self) -> None:
        silent = time.monotonic() - self._answered
        if self._lost_control:
            self._gone = True
            raise CameraError(f"camera {self.name}: control of the camera was lost (unplugged or powered off?)")
        if silent > self.settings.liveness_timeout_s:
            self._gone = True
            raise CameraError(
                f"camera {self.name} has not answered for {silent:.0f} s (unplugged, powered off or its network down?)"
            )

    def fire(self, token: object, wanted: Wanted, lost: Lost) -> None:
        """Software trigger: the frame the camera takes for it will carry ``token`` (see :mod:`.triggers`).

        Raises:
            CameraError: Not in software-trigger mode, or the camera stopped taking commands.
        """
        if self.trigger is None:
            raise CameraError(f"camera {self.name} is not in software-trigger mode")
        self.trigger.fire(token, wanted, lost)

    def read(self) -> Frame | Idle:
        """The next complete frame, or IDLE when none came within 0.2 s and the camera still answers.

        Raises:
            CameraError: The camera stopped answering or lost its control channel.
        """
        Aravis = aravis()
        buffer = self.stream.timeout_pop_buffer(POP_TIMEOUT_US)
        if buffer is None:
            if self.trigger is not None:
                self.trigger.check_late()
                if self.trigger.broken:
                    self._gone = True
                    raise CameraError(f"camera {self.name}: {self.trigger.broken}")
            self._check_alive()
            return IDLE
        try:
            self._answered = time.monotonic()
            frame_id, host_ns = int(buffer.get_frame_id()), int(buffer.get_system_timestamp())
            bound = self.trigger.bind(host_ns) if self.trigger is not None else None
            status = buffer.get_status()
            if status != Aravis.BufferStatus.SUCCESS:
                return self._drop(bound, frame_id, "incomplete", f"its frame arrived incomplete ({status.value_nick})")
            try:
                if buffer.get_image_pixel_format() != self.pixel_format[0]:
                    raise ValueError(f"its pixel format is not the configured {self.pixel_format[1]}")
                image = to_bgr(
                    buffer.get_data(), buffer.get_image_width(), buffer.get_image_height(), self.pixel_format[1]
                )
            except ValueError as exc:
                return self._drop(bound, frame_id, "unreadable", f"its frame could not be read: {exc}")
            stamp = CameraStamp(frame_id=frame_id, timestamp_ns=int(buffer.get_timestamp()))
        finally:
            self.stream.push_buffer(buffer)
        self._count += 1
        return Frame(
            image=image,
            ts=host_ns / 1e9 if host_ns else time.time(),
            index=self._count,
            origin=self.name,
            camera=stamp,
            trigger=None if bound is None else bound.token,
        )

    def _drop(self, bound: Queued | None, frame_id: int, kind: str, reason: str) -> Idle:
        """Count a frame that is not judged (``kind``: incomplete, unreadable); its trigger hears why."""
        if bound is not None and self.trigger is not None:
            self.trigger.frame_lost(bound, reason)
        self.bad_frames += 1
        self._log.warning(kind, "camera %s: frame %d dropped: %s", self.name, frame_id, reason)
        return IDLE

    def counters(self) -> dict[str, int]:
        """Stream statistics for the station's stats: incomplete frames, missing frames, packet resends."""
        counters = {"incomplete_frames": self.bad_frames}
        if self.trigger is not None:
            counters["lost_triggers"] = self.trigger.lost
        stream = self.stream
        if stream is None:
            return counters
        available = {stream.get_info_name(i) for i in range(stream.get_n_infos())}  # per transport: no packets on USB
        for key, info in STREAM_COUNTERS.items():
            if info in available:
                counters[key] = int(stream.get_info_uint64_by_name(info))
        return counters

    def close(self) -> None:
        """Stop acquisition and release the camera (a dead camera's timeouts are waited out here)."""
        self._stop.set()
        if self.trigger is not None:
            self.trigger.close(f"camera {self.name} went offline before taking its frame")
        if self._gone:  # every command would wait for its GVCP timeouts: drop the handles, nothing to say
            self.stream = self.camera = self.device = None
            return
        try:
            if self.stream is not None:
                self.camera.stop_acquisition()
            if self._handler is not None:
                self.device.disconnect(self._handler)
            if self.gige:
                self.device.leave_control()  # now, not when the garbage collector gets to the device
        except Exception as exc:
            logger.debug("camera %s: release failed: %s", self.name, describe_error(exc))
        self.stream = self.camera = self.device = None
