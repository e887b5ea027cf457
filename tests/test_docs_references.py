"""Every test the docs name as proof of a guarantee exists (a renamed test must take its docs along)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "BENCHMARKS.md"])
NAMED = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)?)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_named_in_the_docs_exists(doc):
    missing = []
    for path, test in NAMED.findall(doc.read_text()):
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif test and not re.search(rf"^(async )?def {test[2:]}\b|^class {test[2:]}\b", file.read_text(), re.M):
            missing.append(path + test)
    assert not missing, f"{doc.name} names tests that do not exist: {missing}"
