"""Startup self-test: the bundle's golden images must reproduce their recorded scores."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import cv2

from edge_ad.bundle import Bundle, GoldenImage
from edge_ad.errors import ModelLoadError
from edge_ad.inference.engine import AnomalyModel
from edge_ad.types import Frame

__all__ = ["golden_frames", "self_test"]

logger = logging.getLogger(__name__)


def golden_frames(bundle: Bundle) -> Iterator[tuple[GoldenImage, Frame | None]]:
    """Each golden image of the bundle with its decoded frame (None when the file cannot be read)."""
    for golden in bundle.manifest.golden:
        image = cv2.imread(str(bundle.path / golden.file), cv2.IMREAD_COLOR)
        yield golden, None if image is None else Frame(image=image, ts=0.0, index=1, origin=golden.file)


def self_test(model: AnomalyModel, tolerance: float) -> int:
    """Score every golden image and compare with the score recorded for this variant.

    f32 variants are compared with the export's scores (this device computes as the export machine
    did); bf16/f16 with the scores they gave at commissioning on this device (``model.reference_scores``).

    Args:
        model: The compiled model (its variant selects the recorded scores).
        tolerance: Allowed relative deviation (plus an absolute 1e-4 for scores near zero).

    Returns:
        Number of images checked (0 for bundles without golden images).

    Raises:
        ModelLoadError: An image cannot be read or scores outside the tolerance.
    """
    checked = 0
    for golden, frame in golden_frames(model.bundle):
        if model.reference_scores is not None:
            expected = model.reference_scores.get(golden.file)
        else:
            expected = golden.scores.get(model.run_variant.ir)  # type: ignore[call-overload]
        if expected is None:
            continue
        if frame is None:
            raise ModelLoadError(f"{model.bundle.path / golden.file}: golden image unreadable; re-copy the bundle")
        score = model.infer(frame).score
        if not math.isfinite(score):
            raise ModelLoadError(
                f"self-test failed on {model.device}: {golden.file} scored {score} (not a number); "
                "the model is broken - re-export the bundle"
            )
        if abs(score - expected) > tolerance * abs(expected) + 1e-4:
            raise ModelLoadError(
                f"self-test failed on {model.device} ({model.variant_name}, {model.precision}): {golden.file} "
                f"scored {score:.6g}, the bundle recorded "
                f"{expected:.6g} (tolerance {tolerance:.0%}); the device computes differently from the export "
                "machine - try model.device: CPU or re-export"
            )
        checked += 1
    if checked:
        logger.info("self-test passed on %d golden image(s)", checked)
    return checked
