"""Preprocessing shared by export (calibration, evaluation) and the runtime.

Frames are resized on the host with OpenCV to the model's input size; colour conversion,
float conversion and mean/std normalisation are embedded in the IR with OpenVINO's
PrePostProcessor, so the model consumes the uint8 BGR frame exactly as OpenCV delivers it.
"""

from __future__ import annotations

import cv2
import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "crop_roi", "embed_preprocessing", "resize_frame", "to_batch"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a BGR uint8 image to (height, width); area interpolation when shrinking."""
    if image.shape[:2] == (height, width):
        return image
    shrink = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """The region of interest (x, y, width, height) of a frame, clipped to the frame."""
    if roi is None:
        return image
    x, y, w, h = roi
    crop = image[max(y, 0) : y + h, max(x, 0) : x + w]
    if crop.size == 0:
        raise ValueError(f"roi {roi} lies outside the {image.shape[1]}x{image.shape[0]} frame")
    return crop


def to_batch(image: np.ndarray, height: int, width: int, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A (1, H, W, 3) uint8 BGR tensor ready for an IR built by :func:`embed_preprocessing`."""
    return np.ascontiguousarray(resize_frame(crop_roi(image, roi), height, width))[None]


def embed_preprocessing(
    model: ov.Model,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> ov.Model:
    """Make a float NCHW RGB model accept uint8 NHWC BGR frames.

    Args:
        model: Model whose single input is normalised float RGB, NCHW.
        mean: Per-channel RGB mean on the 0..1 scale.
        std: Per-channel RGB standard deviation on the 0..1 scale.

    Returns:
        The same model with conversion, colour swap and normalisation as its first ops.
    """
    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).mean(
        [m * 255.0 for m in mean]
    ).scale([s * 255.0 for s in std])
    return ppp.build()
