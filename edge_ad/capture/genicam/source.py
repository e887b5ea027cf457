"""A GigE Vision or USB3 Vision camera as a frame source: buffer pool, triggers, liveness, stream statistics.

Frames come from Aravis' stream in the order the camera took them. Incomplete buffers (lost packets that
resends did not recover) are counted and dropped, never judged. Each frame carries the camera's own frame
id and timestamp.

Software trigger: :meth:`GenicamSource.fire` queues a token; one trigger at a time is in flight. The first
frame whose reception began after ``TriggerSoftware`` was executed carries its token, and only then is the
next one fired: a camera busy exposing ignores a trigger, so firing ahead would bind frames to the wrong
parts. A trigger whose frame does not come within ``frame_timeout_s`` (or comes incomplete) is lost,
counted, and left to expire in the station's trigger inbox.

A probe thread reads a register once a second: a camera that answers neither with frames nor with
registers for ``liveness_timeout_s`` is offline (the supervisor reopens it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from edge_ad.capture.genicam.aravis import aravis, describe_error
from edge_ad.capture.genicam.features import FeatureWriter, apply_settings
from edge_ad.capture.genicam.pixels import SUPPORTED, to_bgr
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
    """An ``Aravis.Camera`` by device id, serial, IP or MAC ("" opens the first one found).

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
        self.lost_triggers = 0  # software triggers whose frame never came, or came incomplete
        self._waiting: deque[object] = deque()
        self._in_flight: tuple[object, int, float] | None = None  # token, fired (host ns), fired (monotonic)
        self._fire_lock = threading.Lock()
        self._lost_control = False
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
        name = str(self.camera.get_pixel_format_as_string())
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
        if self.settings.packet_delay_ns:
            try:
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
            raise CameraError(f"camera {self.name}: control of the camera was lost (unplugged or powered off?)")
        if silent > self.settings.liveness_timeout_s:
            raise CameraError(
                f"camera {self.name} has not answered for {silent:.0f} s (unplugged, powered off or its network down?)"
            )

    def fire(self, token: object) -> None:
        """Software trigger: the frame the camera takes for it will carry ``token``.

        It fires now, or after the frame in flight arrived (or was given up).

        Raises:
            CameraError: Not in software-trigger mode, or the camera refused the command.
        """
        if self.settings.trigger != "software":
            raise CameraError(f"camera {self.name} is not in software-trigger mode")
        with self._fire_lock:
            if self._in_flight is None:
                self._execute(token)
            else:
                self._waiting.append(token)

    def _execute(self, token: object) -> None:
        """TriggerSoftware for ``token`` (lock held)."""
        fired_ns = time.time_ns()
        self._writer.execute("trigger", "TriggerSoftware")
        self._in_flight = (token, fired_ns, time.monotonic())

    def _fire_next(self) -> None:
        """The frame in flight came or was given up: fire the next waiting trigger (lock held)."""
        self._in_flight = None
        while self._waiting:
            token = self._waiting.popleft()
            try:
                self._execute(token)
                return
            except CameraError as exc:
                self.lost_triggers += 1
                self._log.warning("fire", "camera %s: a trigger was lost: %s", self.name, exc)

    def _bind(self, received_ns: int) -> object | None:
        """The token of the trigger in flight if this frame (reception began at ``received_ns``) is its frame."""
        with self._fire_lock:
            if self._in_flight is None or received_ns < self._in_flight[1]:
                return None  # a frame nobody here fired, or one that started before the trigger
            token = self._in_flight[0]
            self._fire_next()
            return token

    def _give_up_late_frame(self) -> None:
        with self._fire_lock:
            if self._in_flight is None or time.monotonic() - self._in_flight[2] < self.settings.frame_timeout_s:
                return
            self.lost_triggers += 1
            self._log.warning(
                "late",
                "camera %s: no frame within %.1f s of a software trigger",
                self.name,
                self.settings.frame_timeout_s,
            )
            self._fire_next()

    def read(self) -> Frame | Idle:
        """The next complete frame, or IDLE when none came within 0.2 s and the camera still answers.

        Raises:
            CameraError: The camera stopped answering or lost its control channel.
        """
        Aravis = aravis()
        buffer = self.stream.timeout_pop_buffer(POP_TIMEOUT_US)
        if buffer is None:
            self._give_up_late_frame()
            self._check_alive()
            return IDLE
        try:
            self._answered = time.monotonic()
            frame_id, host_ns = int(buffer.get_frame_id()), int(buffer.get_system_timestamp())
            token = self._bind(host_ns) if self.settings.trigger == "software" else None
            status = buffer.get_status()
            if status != Aravis.BufferStatus.SUCCESS:
                self.lost_triggers += token is not None
                self.bad_frames += 1
                self._log.warning(
                    "incomplete", "camera %s: frame %d dropped (%s)", self.name, frame_id, status.value_nick
                )
                return IDLE
            try:
                if buffer.get_image_pixel_format() != self.pixel_format[0]:
                    raise ValueError(f"its pixel format is not the configured {self.pixel_format[1]}")
                image = to_bgr(
                    buffer.get_data(), buffer.get_image_width(), buffer.get_image_height(), self.pixel_format[1]
                )
            except ValueError as exc:
                self.bad_frames += 1
                self._log.warning("unreadable", "camera %s: frame %d dropped: %s", self.name, frame_id, exc)
                return IDLE
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
            trigger=token,
        )

    def counters(self) -> dict[str, int]:
        """Stream statistics for the station's stats: incomplete frames, missing frames, packet resends."""
        counters = {"incomplete_frames": self.bad_frames, "lost_triggers": self.lost_triggers}
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
