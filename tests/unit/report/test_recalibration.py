"""The recalibration report renders on the station (jinja2, no matplotlib) and says what was decided."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from edge_ad.bundle import load_bundle
from edge_ad.calibrate.recalibrate import Check, Outcome
from edge_ad.report.recalibration import write_recalibration_report
from tests.support.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("models"))).manifest


def child(parent, threshold: float = 0.9):
    fp32 = parent.variants["fp32"]
    variants = {"fp32": fp32.model_copy(update={"threshold": fp32.threshold.model_copy(update={"value": threshold})})}
    record = {"at": "2026-02-03T04:05:06+00:00", "source": "images:/data/fresh", "root": "1"}
    return parent.model_copy(update={"version": "2", "parent": "1", "variants": variants, "recalibration": record})


def outcome(passed: bool, reasons: list[str] | None = None) -> Outcome:
    return Outcome(
        passed=passed,
        variant="fp32",
        method="sigma",
        refit_memory=False,
        old_threshold=3.8,
        new_threshold=0.9,
        target_false_reject=0.1,
        checks={"fp32": Check(false_reject=0.1, old_false_reject=0.0, recall=0.95, old_recall=1.0)},
        frames={"good": 40, "fit": 30, "held_back": 10, "defects": 20},
        reasons=reasons or [],
        parent="1",
        known={"recall_old": 1.0, "recall_new": 1.0, "false_reject_old": 0.0, "false_reject_new": 0.125,
               "defects": 8, "good": 8},
    )  # fmt: skip


SCORES = {"fp32": {"good (fit)": np.linspace(0.5, 0.8, 30), "good (held back)": np.linspace(0.6, 0.95, 10),
                   "defects": np.linspace(0.8, 9.0, 20)}}  # fmt: skip


def test_an_installed_version_names_itself_its_parent_and_the_verdict(parent, tmp_path):
    html = write_recalibration_report(tmp_path / "r.html", outcome(True), child(parent), parent, SCORES).read_text()
    assert "<title>edge_ad recalibration report tiny v2</title>" in html
    assert "tiny v2, recalibrated from v1" in html and "Acceptance: PASS" in html and "installed as v2" in html
    assert "images:/data/fresh" in html and "2026-02-03T04:05:06" in html
    # before and after, with counts: 1 of 10 held-back frames rejected (was 0), 19 of 20 defects caught (was 20)
    assert '10.0 % <span class="note">(1 of 10)</span>' in html and "(19 of 20)" in html and "(20 of 20)" in html
    assert '12.5 % <span class="note">(1 of 8)</span>' in html  # the bundle's own good images
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert svg.count("<line") == 2 and "old v1 3.8" in svg and "new 0.9" in svg  # the two thresholds


def test_the_svg_has_one_bar_per_non_empty_bin(parent, tmp_path):
    from edge_ad.report.histogram import histogram

    html = write_recalibration_report(tmp_path / "r.html", outcome(True), child(parent), parent, SCORES).read_text()
    expected = histogram("", SCORES["fp32"], {"old": 3.806, "new": 0.9})
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert svg.count("<rect") - 1 == sum(1 for s in expected.series for c in s.counts if c)  # minus the frame


def test_a_refused_recalibration_says_why_escaped(parent, tmp_path):
    reasons = ["fp32: recall 95.0% < active bundle's 100.0%", "<b>not markup</b>"]
    html = write_recalibration_report(tmp_path / "r.html", outcome(False, reasons), child(parent), parent, SCORES)
    text = html.read_text()
    assert "Acceptance: FAIL" in text and "nothing was changed: v1 stays active" in text
    assert "(from v1, not installed)</title>" in text and "v2" not in text
    assert "recall 95.0% &lt; active bundle&#39;s 100.0%" in text and "&lt;b&gt;not markup&lt;/b&gt;" in text


def test_a_dry_run_installs_nothing(parent, tmp_path):
    html = write_recalibration_report(tmp_path / "r.html", outcome(True), child(parent), parent, SCORES, dry_run=True)
    assert "Acceptance: PASS" in html.read_text() and "dry run: nothing was installed" in html.read_text()


def test_renders_without_matplotlib_or_torch(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['torch'] = None\n"
        "import edge_ad.report.recalibration, edge_ad.calibrate.recalibrate\n"
        "from edge_ad.report.render import environment\n"
        "environment().get_template('recalibration.html.j2')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'matplotlib', 'torch'} and sys.modules[m]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
