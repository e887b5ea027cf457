"""Setting GenICam features from the config, each checked against the camera's own limits first.

Aravis writes an out-of-range value without complaint (an ExposureTime of 1e9 µs on a camera whose maximum
is 1e7 is accepted and read back), so every value is compared with the feature's bounds, enumeration
entries or access mode, and refused with one line naming the feature, what is allowed and the camera.
"""

from __future__ import annotations

from typing import Any

from edge_ad.capture.genicam.aravis import aravis, describe_error
from edge_ad.config.camera import GenicamConfig
from edge_ad.errors import CameraError

__all__ = ["FeatureWriter", "apply_settings"]


def _number(value: float) -> str:
    return f"{value:g}"


class FeatureWriter:
    """Checked writes to one camera's GenICam features.

    Args:
        device: The camera's ``Aravis.Device``.
        camera: How errors name the camera ("Basler acA1300 (id)").
    """

    def __init__(self, device: Any, camera: str) -> None:
        self.device = device
        self.camera = camera

    def _fail(self, key: str, feature: str, problem: str) -> CameraError:
        return CameraError(f"camera.genicam.{key}: {problem} ({feature} on {self.camera})")

    def _node(self, key: str, feature: str) -> Any:
        if not self.device.is_feature_available(feature):
            return None
        return self.device.get_feature(feature)

    def set(self, key: str, feature: str, value: bool | float | str) -> None:
        """Write ``value`` to ``feature`` (its type decides how), after checking it against the camera's limits.

        Raises:
            CameraError: The camera has no such feature, it is read-only, or the value is out of range /
                not one of its entries; or the camera refused the write.
        """
        node = self._node(key, feature)
        if node is None:
            raise self._fail(key, feature, "this camera has no such feature")
        Aravis = aravis()
        if isinstance(node, Aravis.GcRegister):  # the raw storage behind a feature: no limits to check
            raise self._fail(key, feature, "a raw register cannot be set from the config; set the feature it backs")
        try:
            if isinstance(node, Aravis.GcEnumeration):
                self._set_enumeration(key, feature, value)
            elif isinstance(node, Aravis.GcBoolean):
                if not isinstance(value, bool):
                    raise self._fail(key, feature, f"{value!r} is not true/false")
                self.device.set_boolean_feature_value(feature, value)
            elif isinstance(node, Aravis.GcFloat):
                self._set_float(key, feature, value)
            elif isinstance(node, Aravis.GcInteger):
                self._set_integer(key, feature, value)
            elif isinstance(node, Aravis.GcString):
                self.device.set_string_feature_value(feature, str(value))
            else:
                raise self._fail(key, feature, f"a {type(node).__name__} feature cannot be set from the config")
        except CameraError:
            raise
        except Exception as exc:  # GLib.Error from Aravis: access, protocol, a value the camera rounds away
            raise self._fail(key, feature, f"the camera refused {value!r}: {describe_error(exc)}") from None

    def _set_enumeration(self, key: str, feature: str, value: object) -> None:
        entries = list(self.device.dup_available_enumeration_feature_values_as_strings(feature))
        if str(value) not in entries:
            raise self._fail(key, feature, f"{value!r} is not available; the camera offers {', '.join(entries)}")
        self.device.set_string_feature_value(feature, str(value))

    def _set_float(self, key: str, feature: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, feature, f"{value!r} is not a number")
        low, high = self.device.get_float_feature_bounds(feature)
        if not low <= value <= high:
            allowed = f"{_number(low)}..{_number(high)}"
            raise self._fail(key, feature, f"{_number(value)} is outside the allowed range {allowed}")
        self.device.set_float_feature_value(feature, float(value))

    def _set_integer(self, key: str, feature: str, value: object) -> None:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # gain_db: 2.0 on a camera whose gain is the integer GainRaw
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, feature, f"{value!r} is not a whole number (an integer feature)")
        low, high = self.device.get_integer_feature_bounds(feature)
        if not low <= value <= high:
            raise self._fail(key, feature, f"{value} is outside the allowed range {low}..{high}")
        step = self.device.get_integer_feature_increment(feature)
        if step > 1 and (value - low) % step:
            raise self._fail(key, feature, f"{value} is not {low} plus a multiple of {step}")
        self.device.set_integer_feature_value(feature, value)

    def execute(self, key: str, feature: str) -> None:
        """Run a command feature (TriggerSoftware).

        Raises:
            CameraError: No such command, or the camera refused it.
        """
        if self._node(key, feature) is None:
            raise self._fail(key, feature, "this camera has no such command")
        try:
            self.device.execute_command(feature)
        except Exception as exc:
            raise self._fail(key, feature, f"the command failed: {describe_error(exc)}") from None


def apply_settings(writer: FeatureWriter, settings: GenicamConfig, fps: float | None) -> None:
    """Configure acquisition: format, binning, region, exposure, gain, trigger, frame rate, then ``features``.

    Binning comes before the region (it changes the sensor's size in pixels), and the offsets are zeroed
    before width and height are set (the allowed width depends on the offset).

    Raises:
        CameraError: The first setting the camera cannot take, named.
    """
    if settings.pixel_format is not None:
        writer.set("pixel_format", "PixelFormat", settings.pixel_format)
    if settings.binning is not None:
        writer.set("binning", "BinningHorizontal", settings.binning[0])
        writer.set("binning", "BinningVertical", settings.binning[1])
    if settings.region is not None:
        x, y, width, height = settings.region
        writer.set("region", "OffsetX", 0)
        writer.set("region", "OffsetY", 0)
        writer.set("region", "Width", width)
        writer.set("region", "Height", height)
        writer.set("region", "OffsetX", x)
        writer.set("region", "OffsetY", y)
    if settings.exposure_us is not None:
        writer.set("exposure_us", _first(writer, "ExposureTime", "ExposureTimeAbs"), float(settings.exposure_us))
    if settings.gain_db is not None:
        writer.set("gain_db", _first(writer, "Gain", "GainRaw"), float(settings.gain_db))
    _set_trigger(writer, settings)
    if fps is not None and settings.trigger == "free_run":
        if writer.device.is_feature_available("AcquisitionFrameRateEnable"):
            writer.set("fps", "AcquisitionFrameRateEnable", True)
        writer.set("fps", _first(writer, "AcquisitionFrameRate", "AcquisitionFrameRateAbs"), float(fps))
    for feature, value in settings.features.items():
        writer.set(f"features.{feature}", feature, value)


def _first(writer: FeatureWriter, *names: str) -> str:
    """The first of a feature's names (SFNC, then the older ``...Abs``) that the camera has."""
    for name in names:
        if writer.device.is_feature_available(name):
            return name
    return names[0]


def _set_trigger(writer: FeatureWriter, settings: GenicamConfig) -> None:
    """FrameStart trigger off (free run), on from TriggerSoftware, or on from a hardware line."""
    device = writer.device
    if device.is_feature_available("TriggerSelector"):
        for selector in device.dup_available_enumeration_feature_values_as_strings("TriggerSelector"):
            if selector != "FrameStart":  # AcquisitionStart/FrameBurstStart triggers would hold back frame starts
                writer.set("trigger", "TriggerSelector", selector)
                writer.set("trigger", "TriggerMode", "Off")
        writer.set("trigger", "TriggerSelector", "FrameStart")
    if settings.trigger == "free_run":
        if device.is_feature_available("TriggerMode"):
            writer.set("trigger", "TriggerMode", "Off")
        return
    writer.set("trigger", "TriggerMode", "On")
    if settings.trigger == "software":
        writer.set("trigger", "TriggerSource", "Software")
        return
    writer.set("trigger_line", "TriggerSource", settings.trigger_line)
    if settings.trigger_activation is not None and device.is_feature_available("TriggerActivation"):
        writer.set("trigger_activation", "TriggerActivation", settings.trigger_activation)
