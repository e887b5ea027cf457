"""The report's galleries say what they show (found: "worst misses" titled correctly judged images)."""

from __future__ import annotations

import pytest

from edge_ad.export.gallery import LIMIT, closest_calls, errors, gallery_title


def rows(*pairs: tuple[float, int]) -> list[dict]:
    return [{"score": s, "label": lbl} for s, lbl in pairs]


@pytest.mark.parametrize(
    ("pairs", "kind", "title"),
    [
        # a good image scoring exactly the threshold is NG: a false reject
        (((1.0, 0), (2.0, 1)), "false rejects", "False rejects at 1 (fp32): 1 of 1 good images rejected, worst first"),
        (((0.9, 0), (2.0, 1), (0.5, 1)), "false rejects", "No false rejects at 1 (fp32): all 1 good images pass"),
        (
            ((0.9, 0), (2.0, 1), (0.5, 1)),
            "escapes",
            "Escapes at 1 (fp32): 1 of 2 defect images pass as OK, worst first",
        ),
        (((0.2, 0), (1.0, 1)), "escapes", "No escapes at 1 (fp32): all 1 defect images are rejected"),
    ],
)
def test_titles_count_with_the_ng_rule_and_say_none_plainly(pairs, kind, title):
    assert gallery_title(rows(*pairs), 1.0, "fp32", kind) == title


def test_a_long_gallery_says_how_many_it_shows():
    many = rows(*[(2.0 + i, 0) for i in range(LIMIT + 3)])
    assert gallery_title(many, 1.0, "int8", "false rejects").endswith(f"worst first ({LIMIT} shown)")


def test_worst_first_and_closest_calls():
    r = rows((3.0, 0), (5.0, 0), (0.5, 0), (0.1, 1), (0.7, 1), (4.0, 1), (1.5, 1))
    assert [x["score"] for x in errors(r, 1.0, "false rejects")] == [5.0, 3.0]  # highest-scoring good first
    assert [x["score"] for x in errors(r, 1.0, "escapes")] == [0.1, 0.7]  # lowest-scoring defect first
    assert [x["score"] for x in closest_calls(r, 1.0)] == [0.5, 1.5]
    assert closest_calls(rows((0.5, 0)), 1.0) == [{"score": 0.5, "label": 0}]  # no defect caught: only the good one
