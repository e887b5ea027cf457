"""The asyncua version the OPC UA server relies on: edge_ad.opcua.calls patches its server internals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("asyncua")

from edge_ad.errors import ConfigError
from edge_ad.opcua import ASYNCUA_BELOW, ASYNCUA_MIN, require_asyncua


@pytest.mark.parametrize(
    ("installed", "ok"),
    [("2.1.0", True), ("2.1.7", True), ("2.0.9", False), ("2.2.0", False), ("3.0", False)],  # a newer minor: refused
)
def test_only_the_tested_minor_is_accepted(monkeypatch, installed, ok):
    monkeypatch.setattr("importlib.metadata.version", lambda name: installed)
    if ok:
        require_asyncua()
    else:
        with pytest.raises(ConfigError, match=r"asyncua >= 2\.1,<2\.2 \(installed"):
            require_asyncua()


def test_the_extra_has_the_same_bounds():
    text = (Path(__file__).parents[3] / "pyproject.toml").read_text()  # no tomllib on 3.10
    (spec,) = re.findall(r'^\s*"(asyncua[^"]*)"', text.split("\nopcua = [")[1].split("]")[0], flags=re.MULTILINE)
    want = f"asyncua>={'.'.join(map(str, ASYNCUA_MIN))},<{'.'.join(map(str, ASYNCUA_BELOW))}"
    assert spec.replace(" ", "") == want
