"""The recalibration report: what a station's refit measured and decided, beside its parent's numbers.

Rendered on the station (no matplotlib): the score histograms are inline SVG drawn from bin counts.
An installed version carries it as ``report/recalibration.html``, listed in its manifest and signed
with it; a failed or dry run leaves it next to the histogram PNG in the state directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_ad.bundle.manifest import RECALIBRATION_REPORT, Manifest, recalibration_root
from edge_ad.inference.precision import RUN_VARIANTS
from edge_ad.report.histogram import Histogram, histogram
from edge_ad.report.render import render_html

if TYPE_CHECKING:
    from edge_ad.calibrate.recalibrate import Outcome
    from edge_ad.commissioning import CommissionRecord

__all__ = ["RECALIBRATION_REPORT", "Comparison", "write_recalibration_report"]


@dataclass(frozen=True)
class Comparison:
    """One measured quantity, parent version against the new one (rates with their counts)."""

    what: str
    old: float | None
    new: float | None
    rate: bool = True
    old_count: str = ""
    new_count: str = ""


def _of(rate: float | None, total: int | None) -> str:
    return "" if rate is None or not total else f"{round(rate * total)} of {total}"


def _comparisons(outcome: Outcome, parent: Manifest, manifest: Manifest) -> list[Comparison]:
    """The acceptance numbers of the variant the new version runs here, before and after."""
    ir = RUN_VARIANTS[outcome.variant].ir
    held, defects = outcome.frames.get("held_back"), outcome.frames.get("defects")
    rows = [
        Comparison(
            f"threshold ({ir})",
            parent.variants[ir].threshold.value,
            manifest.variants[ir].threshold.value,
            rate=False,
        ),
        Comparison(
            "false rejects on the held-back good frames",
            outcome.old_false_reject,
            outcome.false_reject,
            old_count=_of(outcome.old_false_reject, held),
            new_count=_of(outcome.false_reject, held),
        ),
    ]
    if outcome.recall is not None:
        rows.append(
            Comparison(
                "recall on the defect frames",
                outcome.old_recall,
                outcome.recall,
                old_count=_of(outcome.old_recall, defects),
                new_count=_of(outcome.recall, defects),
            )
        )
    known = outcome.known
    if known:
        rows += [
            Comparison(
                "recall on the bundle's own defect images (acceptance set, FP32)",
                known["recall_old"],
                known["recall_new"],
                old_count=_of(known["recall_old"], int(known["defects"])),
                new_count=_of(known["recall_new"], int(known["defects"])),
            ),
            Comparison(
                "false rejects of the bundle's own good images (acceptance set, FP32)",
                known["false_reject_old"],
                known["false_reject_new"],
                old_count=_of(known["false_reject_old"], int(known["good"])),
                new_count=_of(known["false_reject_new"], int(known["good"])),
            ),
        ]
    return rows


def _histograms(
    scores: dict[str, dict[str, np.ndarray | None]], parent: Manifest, manifest: Manifest
) -> list[Histogram]:
    return [
        histogram(
            f"{ir.upper()} scores of the recalibration frames (new model)",
            series,
            {
                f"old v{parent.version}": parent.variants[ir].threshold.value,
                "new": manifest.variants[ir].threshold.value,
            },
        )
        for ir, series in scores.items()
    ]


def write_recalibration_report(
    path: Path,
    outcome: Outcome,
    manifest: Manifest,
    parent: Manifest,
    scores: dict[str, dict[str, np.ndarray | None]],
    dry_run: bool = False,
    commissioning: CommissionRecord | None = None,
) -> Path:
    """Render the recalibration report to ``path``.

    Args:
        path: The HTML file to write.
        outcome: What the recalibration measured and decided.
        manifest: The new version's manifest (thresholds, ``recalibration`` record; ``version`` the one it
            is installed as).
        parent: The version it was recalibrated from.
        scores: Per IR variant: the new model's scores by series (fit frames, held-back frames, defects).
        dry_run: Measured only: nothing is installed even on PASS.
        commissioning: The new version's commissioning on this device, if any.

    Returns:
        ``path``.
    """
    installed = outcome.passed and not dry_run
    ran = outcome.variant
    return render_html(
        "recalibration.html.j2",
        path,
        name=manifest.name,
        version=manifest.version if installed else None,
        parent=parent,
        root=recalibration_root(manifest) or parent.version,
        record=manifest.recalibration,
        outcome=outcome,
        dry_run=dry_run,
        installed=installed,
        comparisons=_comparisons(outcome, parent, manifest),
        thresholds={
            ir: (parent.variants[ir].threshold, v.threshold)
            for ir, v in manifest.variants.items()
            if ir in parent.variants
        },
        runs=ran,
        histograms=_histograms(scores, parent, manifest),
        candidates=list(commissioning.candidates.values()) if commissioning else [],
        chosen=commissioning.chosen if commissioning else None,
    )
