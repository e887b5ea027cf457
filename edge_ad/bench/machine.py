"""What a benchmark ran on (recorded next to every result)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

__all__ = ["machine"]


def machine() -> dict[str, str | int | list[str]]:
    """CPU model, the CPU flags that matter, core count, Python and OpenVINO versions."""
    import openvino as ov

    from edge_ad.inference.device import cpu_flags

    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {
        "cpu": cpu or str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME")) or platform.processor(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "openvino": ov.__version__,
    }
