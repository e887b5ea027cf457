"""Camera buffers to OpenCV's BGR images: Mono8, the four 8-bit Bayer mosaics and RGB8/BGR8."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["SUPPORTED", "to_bgr"]

# GenICam names a Bayer mosaic by its top-left 2x2 cell; OpenCV's *RGGB/... aliases use the same convention
_BAYER = {
    "BayerRG8": cv2.COLOR_BayerRGGB2BGR,
    "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
    "BayerGR8": cv2.COLOR_BayerGRBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGBRG2BGR,
}
_CHANNELS = {"Mono8": 1, "RGB8": 3, "BGR8": 3, **dict.fromkeys(_BAYER, 1)}
SUPPORTED = tuple(_CHANNELS)


def to_bgr(data: bytes, width: int, height: int, pixel_format: str) -> np.ndarray:
    """The (height, width, 3) uint8 BGR image in a buffer of ``pixel_format`` (trailing padding ignored).

    Raises:
        ValueError: An unsupported format, or fewer bytes than the image needs.
    """
    channels = _CHANNELS.get(pixel_format)
    if channels is None:
        raise ValueError(f"pixel format {pixel_format} is not supported; use one of {', '.join(SUPPORTED)}")
    size = width * height * channels
    if len(data) < size:
        raise ValueError(f"{pixel_format} {width}x{height} needs {size} bytes, the buffer has {len(data)}")
    flat = np.frombuffer(data, dtype=np.uint8, count=size)
    if pixel_format == "Mono8":
        return cv2.cvtColor(flat.reshape(height, width), cv2.COLOR_GRAY2BGR)
    if pixel_format in _BAYER:
        return cv2.cvtColor(flat.reshape(height, width), _BAYER[pixel_format])
    image = flat.reshape(height, width, 3)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if pixel_format == "RGB8" else image.copy()
