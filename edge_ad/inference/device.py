"""Which device and CPU this is: device choice, CPU flags and the identity a commissioning is keyed on."""

from __future__ import annotations

import contextlib
from pathlib import Path

import openvino as ov

__all__ = ["CPU_FLAGS", "available_devices", "capabilities", "cpu_flags", "device_identity", "pick_device"]

# the instruction-set extensions that change how fast (and, left to the plugin, how precisely) OpenVINO computes
CPU_FLAGS = (
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The :data:`CPU_FLAGS` this CPU has, in that order (empty where /proc/cpuinfo cannot be read)."""
    have: set[str] = set()
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                break
    return [flag for flag in CPU_FLAGS if flag in have]


def available_devices(core: ov.Core) -> list[str]:
    """Devices OpenVINO can see on this machine."""
    return list(core.available_devices)


def pick_device(core: ov.Core, requested: str) -> tuple[str, str | None]:
    """Choose the device to compile on.

    Returns:
        (device, note): ``note`` explains a fallback to CPU, or is None.
    """
    if requested.startswith("AUTO"):  # installs before 2026-12 wrote it; it picks and switches devices itself
        return "CPU", (
            f"model.device {requested} runs on CPU: AUTO lets OpenVINO choose and switch devices at run time, "
            "which changes scores; set model.device to CPU or GPU"
        )
    devices = available_devices(core)
    base = requested.split(".")[0]
    if requested in devices or (requested == base and any(d.split(".")[0] == base for d in devices)):
        return requested, None
    return "CPU", f"device {requested} not available (have {', '.join(devices) or 'none'}); using CPU"


def capabilities(core: ov.Core, device: str) -> set[str]:
    """The device's ``OPTIMIZATION_CAPABILITIES`` (``BF16``, ``FP16``, ``INT8``...)."""
    try:
        return {str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")}
    except RuntimeError:
        return set()


def device_identity(core: ov.Core, device: str) -> dict[str, object]:
    """What a commissioning depends on besides the bundle: device, its full name, CPU flags, OpenVINO version."""
    try:
        name = str(core.get_property(device, "FULL_DEVICE_NAME"))
    except RuntimeError:
        name = device
    return {"device": device, "device_name": name, "cpu_flags": cpu_flags(), "openvino": ov.get_version()}
