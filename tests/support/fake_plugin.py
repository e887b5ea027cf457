"""A device whose plugin defaults to bf16 (as CPUs with avx512_bf16/AMX do), on any CPU.

It wraps the real OpenVINO core: models compute in f32 whatever is asked (so numbers stay
deterministic on every machine), but report the precision they were asked for, or bf16 when
nobody asked. Every hint edge_ad passes is kept in ``asked``.
"""

from __future__ import annotations

from typing import Any

import openvino as ov

__all__ = ["Bf16DefaultPlugin"]

RealCore = ov.Core
TYPES = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}


class _Reporting:
    def __init__(self, compiled: ov.CompiledModel, hint: str) -> None:
        self._compiled, self._hint = compiled, hint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)

    def get_property(self, name: str) -> Any:
        return TYPES[self._hint] if name == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(name)


class Bf16DefaultPlugin:
    """Stands in for ``openvino.Core`` (monkeypatch ``openvino.Core`` with an instance's ``make``)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def make(self) -> Bf16DefaultPlugin:
        self._core = RealCore()
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def get_property(self, device: str, name: str) -> Any:
        if name == "INFERENCE_PRECISION_HINT":
            return ov.Type.bf16
        value = self._core.get_property(device, name)
        return [*value, "BF16"] if name == "OPTIMIZATION_CAPABILITIES" and "BF16" not in value else value

    def compile_model(self, model: Any, device: str, config: dict | None = None) -> _Reporting:
        hint = str((config or {}).get("INFERENCE_PRECISION_HINT", "bf16"))
        self.asked.append(hint)
        return _Reporting(
            self._core.compile_model(model, device, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"}), hint
        )
