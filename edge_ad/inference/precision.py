"""Explicit inference precision: every compile in edge_ad goes through :func:`compile_pinned`.

OpenVINO's CPU plugin runs an "fp32" IR in bf16 on CPUs with native bf16 (AVX-512 BF16, AMX) and
the GPU plugin in f16, unless told otherwise; scores then move by a few per cent and a threshold
fitted on FP32 scores no longer means what it did. edge_ad never takes that default: a run
variant names its IR *and* its precision, and the precision is read back from the compiled model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openvino as ov

from edge_ad.errors import ModelLoadError, first_line

__all__ = ["RUN_VARIANTS", "RunVariant", "compile_pinned", "plugin_default_precision", "read_precision"]


@dataclass(frozen=True)
class RunVariant:
    """A way to run a bundle: which IR, at which ``INFERENCE_PRECISION_HINT``.

    Attributes:
        name: ``fp32``, ``int8``, ``bf16`` or ``f16`` (``model.variant`` in the config).
        ir: The bundle IR variant it runs (``fp32`` or ``int8``); its threshold is the one judged with.
        precision: Precision of every layer NNCF did not quantize (``f32``, ``bf16``, ``f16``).
        capability: ``OPTIMIZATION_CAPABILITIES`` entry the device must list, or None.
        devices: Device families it is offered on (bf16: CPUs with native bf16/AMX; f16: GPUs).
    """

    name: str
    ir: str
    precision: str
    capability: str | None = None
    devices: tuple[str, ...] = ("CPU", "GPU", "NPU")

    def offered_on(self, device: str, capabilities: set[str]) -> str | None:
        """Why this variant is not a candidate on ``device`` (None when it is)."""
        if device.split(".")[0] not in self.devices:
            return f"{self.precision} is offered on {'/'.join(self.devices)} only"
        if self.capability is not None and self.capability not in capabilities:
            return f"{device} has no native {self.capability}"
        return None

    @property
    def reduced(self) -> bool:
        """Whether float layers run below f32 (only where commissioning proved it on this device)."""
        return self.precision != "f32"


RUN_VARIANTS: dict[str, RunVariant] = {
    "fp32": RunVariant("fp32", ir="fp32", precision="f32"),
    "int8": RunVariant("int8", ir="int8", precision="f32"),  # quantized layers in INT8, the rest in f32
    "bf16": RunVariant("bf16", ir="fp32", precision="bf16", capability="BF16", devices=("CPU",)),
    "f16": RunVariant("f16", ir="fp32", precision="f16", capability="FP16", devices=("GPU",)),
}


def read_precision(compiled: ov.CompiledModel) -> str:
    """The ``INFERENCE_PRECISION_HINT`` the compiled model runs with (``f32``, ``bf16``, ``f16``).

    Raises:
        ModelLoadError: The device does not report it (edge_ad cannot then vouch for its numbers).
    """
    try:
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except RuntimeError as exc:
        raise ModelLoadError(
            f"the device does not report its inference precision ({first_line(exc)}); use model.device CPU or GPU"
        ) from None


def plugin_default_precision(core: ov.Core, device: str) -> str:
    """What the plugin would run float layers in if nobody said (bf16 on bf16 CPUs, f16 on GPUs)."""
    return core.get_property(device, "INFERENCE_PRECISION_HINT").get_type_name()


def compile_pinned(
    core: ov.Core, model: ov.Model, device: str, precision: str, hints: dict[str, Any] | None = None, what: str = ""
) -> ov.CompiledModel:
    """Compile ``model`` on ``device`` at ``precision`` and check that the plugin obeyed.

    Args:
        core: The OpenVINO core (its cache directory, if set, applies).
        model: The model to compile.
        device: OpenVINO device name.
        precision: ``f32``, ``bf16`` or ``f16``.
        hints: Further compile properties (performance hint, streams).
        what: The model's file, named in errors.

    Raises:
        ModelLoadError: The device cannot compile the model, or reports another precision.
    """
    config = {**(hints or {}), "INFERENCE_PRECISION_HINT": precision}
    try:
        compiled = core.compile_model(model, device, config)
    except RuntimeError as exc:
        what = what or "model"
        raise ModelLoadError(f"{what}: cannot compile on {device} in {precision} ({first_line(exc)})") from None
    ran = read_precision(compiled)
    if ran != precision:
        advice = (
            f"{device} cannot run {precision} natively"
            if precision != "f32"
            else "report the OpenVINO version and device; edge_ad cannot vouch for these numbers"
        )
        raise ModelLoadError(f"{what or 'model'}: {device} compiled in {ran} although {precision} was asked; {advice}")
    return compiled
