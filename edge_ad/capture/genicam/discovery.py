"""Which GenICam cameras this PC sees, and how each is set now (``edge-ad cameras``).

Discovery (GigE Vision broadcast, USB3 Vision enumeration) gives vendor, model, serial and address. The
current pixel format and exposure need the camera opened: each is opened briefly and released at once. A
camera another application controls still answers register reads; it is listed as in use, not as failed.
One camera that cannot be opened or read never hides the others: its row carries the error instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edge_ad.capture.genicam.aravis import INSTALL_HINT, aravis, describe_error
from edge_ad.errors import CameraError

__all__ = ["CameraInfo", "list_cameras"]


@dataclass(frozen=True)
class CameraInfo:
    """One discovered camera.

    Attributes:
        id: Aravis device id; ``camera.source: genicam://<id>`` opens it (so do its user name, MAC and IP).
        vendor: Manufacturer name.
        model: Model name.
        serial: Serial number.
        address: IP address (GigE Vision); empty for USB3 Vision.
        protocol: ``GigEVision`` or ``USB3Vision``.
        pixel_format: Current PixelFormat, None if it could not be read.
        exposure_us: Current exposure time in microseconds, None if it could not be read.
        in_use: Another application holds the camera's control channel (it is read-only for us).
        error: Why the camera could not be opened or read ("" if it could).
    """

    id: str
    vendor: str
    model: str
    serial: str
    address: str
    protocol: str
    pixel_format: str | None = None
    exposure_us: float | None = None
    in_use: bool = False
    error: str = ""


def _text(value: object) -> str:
    return "" if value is None else str(value)


def list_cameras() -> list[CameraInfo]:
    """Every GenICam camera discovery finds, with its current pixel format and exposure.

    Raises:
        CameraError: Aravis (PyGObject and the Aravis 0.8 typelib) is not installed; the message says how
            to install it.
    """
    try:
        Aravis = aravis()
    except CameraError:
        raise CameraError(f"listing GenICam cameras needs Aravis, which is not installed: {INSTALL_HINT}") from None
    Aravis.update_device_list()
    cameras = []
    for i in range(Aravis.get_n_devices()):
        found = CameraInfo(
            id=_text(Aravis.get_device_id(i)),
            vendor=_text(Aravis.get_device_vendor(i)),
            model=_text(Aravis.get_device_model(i)),
            serial=_text(Aravis.get_device_serial_nbr(i)),
            address=_text(Aravis.get_device_address(i)),
            protocol=_text(Aravis.get_device_protocol(i)),
        )
        cameras.append(_read_settings(Aravis, found))
    return cameras


def _read_settings(Aravis: Any, found: CameraInfo) -> CameraInfo:
    """``found`` with the camera's pixel format and exposure, or with why they could not be read."""
    try:
        camera = Aravis.Camera.new(found.id)
    except Exception as exc:  # GLib.Error: gone since discovery, unreachable subnet, USB permissions
        return replace(found, error=f"cannot open: {describe_error(exc)}")
    device = None
    try:
        device = camera.get_device()
        in_use = not device.is_controller()
        errors = []
        pixel_format = exposure = None
        try:
            pixel_format = str(camera.get_pixel_format_as_string())
        except Exception as exc:
            errors.append(f"PixelFormat: {describe_error(exc)}")
        try:
            exposure = float(camera.get_exposure_time())
        except Exception as exc:
            errors.append(f"exposure: {describe_error(exc)}")
        return replace(found, pixel_format=pixel_format, exposure_us=exposure, in_use=in_use, error="; ".join(errors))
    except Exception as exc:
        return replace(found, error=f"cannot read: {describe_error(exc)}")
    finally:
        _release(camera, device)


def _release(camera: Any, device: Any) -> None:
    """Give the control channel back now (a GigE camera refuses other controllers until it times out)."""
    try:
        if device is not None and camera.is_gv_device() and device.is_controller():
            device.leave_control()
    except Exception:
        pass  # released anyway when the last reference goes
