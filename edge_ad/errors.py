"""Exceptions for every user-facing failure.

Each message names the file, key or device and says what to do; ``edge_ad.cli`` prints it as one
line on stderr and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "BundleError",
    "CameraError",
    "ConfigError",
    "DatasetError",
    "EdgeAdError",
    "ExportError",
    "ModelLoadError",
    "first_line",
]


class EdgeAdError(Exception):
    """Base class: an expected failure with a message meant for the operator."""


class ConfigError(EdgeAdError):
    """The station configuration file is missing or invalid."""


class BundleError(EdgeAdError):
    """A model bundle is missing, incomplete, or does not match its manifest."""


class ModelLoadError(EdgeAdError):
    """OpenVINO could not read or compile a model, or its inputs/outputs are unexpected."""


class CameraError(EdgeAdError):
    """A frame source cannot be opened or stopped delivering frames."""


class BrokerError(EdgeAdError):
    """The MQTT broker is unreachable or refused the connection."""


class DatasetError(EdgeAdError):
    """A dataset directory does not have the expected MVTec-style layout."""


class ExportError(EdgeAdError):
    """Training, conversion or quantization could not produce a bundle."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
