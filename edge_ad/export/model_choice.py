"""``model.type: auto``: fit the cheap families on the same data, keep the best within a latency budget.

Each candidate (``model.auto_candidates``; by default the families that fit without training epochs,
in seconds) is trained at one input size, its FP32 IR scores the validation split with the runtime,
and the rule keeps the highest validation AUROC among those whose median single-frame latency —
measured on the export machine, in the same run — is within ``model.auto_latency_ms``; ties go to
the faster one. When none is within the budget the fastest is kept and the table says so. The
table goes into the manifest (``metrics.model_choice``), the export summary and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["AUTO_CANDIDATES", "ModelTrial", "choose_model", "model_table", "rule"]

AUTO_CANDIDATES = ("patchcore", "padim", "global_knn")  # no training epochs: each fits in seconds


@dataclass(frozen=True)
class ModelTrial:
    """One candidate family at the trial size: how well it separated the validation split, how fast it ran."""

    type: str
    size: int
    validation_auroc: float
    p50_ms: float
    fit_s: float


def choose_model(trials: list[ModelTrial], budget_ms: float | None) -> str:
    """The best validation AUROC within ``budget_ms`` (ties: the faster); none within it: the fastest."""
    within = [t for t in trials if budget_ms is None or t.p50_ms <= budget_ms]
    if not within:
        return min(trials, key=lambda t: t.p50_ms).type
    return max(within, key=lambda t: (t.validation_auroc, -t.p50_ms)).type


def rule(budget_ms: float | None) -> str:
    """The choice rule in words, for the summary and the report."""
    if budget_ms is None:
        return "the best validation AUROC (no latency budget)"
    return (
        f"the best validation AUROC among candidates with FP32 p50 <= {budget_ms:g} ms on the export machine "
        "(none within: the fastest)"
    )


def model_table(trials: list[ModelTrial], chosen: str, budget_ms: float | None) -> dict:
    """``manifest.metrics["model_choice"]``: the trials, the choice and the rule."""
    return {
        "candidates": [asdict(t) for t in trials],
        "chosen": chosen,
        "budget_ms": budget_ms,
        "within_budget": any(t.type == chosen and (budget_ms is None or t.p50_ms <= budget_ms) for t in trials),
        "rule": rule(budget_ms),
    }
