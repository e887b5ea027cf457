"""The model's input size chosen from the data when the recipe does not fix it.

Export fits the model at each candidate size, scores the validation split with the runtime and
keeps the smallest size whose validation AUROC is within :data:`TOLERANCE` of the best: smaller
inputs are faster on the station, larger ones see small defects. The table goes into the
manifest (``metrics.input_size``), the export summary and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["CANDIDATES", "TOLERANCE", "SizeTrial", "candidate_sizes", "choose_size", "downscale_note", "size_table"]

CANDIDATES = (128, 192, 256)
TOLERANCE = 0.005  # validation AUROC: half a point
EFFICIENTAD_STEP = 32  # EfficientAD takes multiples of 32 from 128 on


@dataclass(frozen=True)
class SizeTrial:
    """One candidate input size and how well it separated the validation split."""

    size: int
    validation_auroc: float
    fit_s: float


def candidate_sizes(source: tuple[int, int], model_type: str) -> list[int]:
    """Sizes to try for training images of ``source`` (width, height, after the ROI).

    The fixed candidates up to the images' short side, plus that side itself when it is smaller
    than the largest candidate: upscaling adds pixels but no detail.
    """
    side = min(source)
    if model_type == "efficientad":
        side = max(CANDIDATES[0], side - side % EFFICIENTAD_STEP)
    sizes = [s for s in CANDIDATES if s <= side]
    if side < CANDIDATES[-1] and side not in sizes:
        sizes.append(side)
    return sorted(sizes)


def choose_size(trials: list[SizeTrial], tolerance: float = TOLERANCE) -> int:
    """The smallest size whose validation AUROC is within ``tolerance`` of the best one."""
    best = max(t.validation_auroc for t in trials)
    return min(t.size for t in trials if t.validation_auroc >= best - tolerance - 1e-12)


def downscale_note(source: tuple[int, int], size: int, roi: tuple[int, int, int, int] | None) -> str | None:
    """What the user should know when the training images are shrunk to the model input (None: they are not)."""
    width, height = source
    factor = max(width, height) / size
    if factor <= 1:
        return None
    where = "the ROI" if roi else "the training images"
    hint = (
        "narrow the roi to the part"
        if roi
        else "set roi (x, y, width, height) to crop the part if it is small in the frame"
    )
    return (
        f"{where} ({width}x{height} px) are downscaled {factor:.1f}x to {size}x{size} px: a defect smaller than "
        f"{factor:.0f} px shrinks below one model pixel; {hint}"
    )


RULE_CHOSEN = f"the smallest size within {TOLERANCE:.3f} validation AUROC of the best"
RULE_FIXED = "fixed by the recipe (model.image_size)"
RULE_ONLY = "the only candidate: the training images' short side"


def size_table(
    trials: list[SizeTrial], chosen: int, rule: str, source: tuple[int, int], roi: tuple[int, int, int, int] | None
) -> dict:
    """``manifest.metrics["input_size"]``: the trials, the choice and why, and the downscale note."""
    return {
        "candidates": [asdict(t) for t in trials],
        "chosen": chosen,
        "source": list(source),
        "rule": rule,
        "note": downscale_note(source, chosen, roi),
    }
