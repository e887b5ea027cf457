"""The report's error gallery says what it shows (found: "worst misses" titled correctly judged images)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from edge_ad.export.report import gallery_title


def rows(*pairs: tuple[float, int]) -> list[dict]:
    return [{"score": s, "label": lbl} for s, lbl in pairs]


def test_the_gallery_title_counts_false_rejects_and_escapes_with_the_ng_rule():
    assert gallery_title(rows((0.9, 0), (2.0, 1), (0.5, 1)), 1.0, "fp32") == (
        "False rejects (0) and escapes (1) at 1 (fp32), worst first"
    )
    assert gallery_title(rows((1.0, 0), (2.0, 1)), 1.0, "int8").startswith("False rejects (1) and escapes (0)")
    assert gallery_title(rows((0.2, 0), (2.0, 1)), 1.0, "fp32") == (
        "No false reject or escape at 1 (fp32): the closest calls"
    )
