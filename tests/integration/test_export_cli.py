"""`edge-ad export` as a user runs it, in a process whose non-loopback connections all fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ad.bundle import load_bundle

pytestmark = [pytest.mark.export, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "tests" / "support" / "offline"


def offline_cli(*args: str, log: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(OFFLINE), os.environ.get("PYTHONPATH", "")]),
        "EDGE_AD_REPO": str(REPO),
        "EDGE_AD_BLOCKED_LOG": str(log),
        "HF_HUB_OFFLINE": "0",  # do not help: a download attempt must hit the guard
    }
    return subprocess.run(
        [sys.executable, "-m", "edge_ad.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_guard_blocks_downloads(tmp_path):
    log = tmp_path / "blocked.txt"
    code = "import urllib.request; urllib.request.urlopen('https://pypi.org', timeout=5)"
    env = {
        **os.environ,
        "PYTHONPATH": str(OFFLINE),
        "EDGE_AD_REPO": str(REPO),
        "EDGE_AD_BLOCKED_LOG": str(log),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and "blocked by test" in proc.stderr
    assert "pypi.org" in log.read_text()


def test_export_command_offline_accuracy_aware_and_signed(tmp_path):
    from edge_ad.bundle.signing import new_key_pair
    from edge_ad.bundle.trust import Trust
    from edge_ad.config import SecurityConfig

    log = tmp_path / "blocked.txt"
    private, public = new_key_pair(tmp_path / "keys", "workstation")
    data = offline_cli("make-dataset", str(tmp_path / "data"), "--categories", "gravel", "--train", "30", log=log)
    assert data.returncode == 0, data.stderr
    proc = offline_cli(
        "export", "--data", str(tmp_path / "data" / "gravel"), "--model", "patchcore",
        "--int8", "aware", "--max-drop", "0.005", "--out", str(tmp_path / "models"), "--sign-key", str(private),
        log=log,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "INT8 gate (aware)" in proc.stdout and "-> PASS" in proc.stdout
    assert proc.stdout.startswith("\nbundle "), "library logs leak into the summary on stdout"
    bundle = load_bundle(tmp_path / "models" / "gravel")
    assert bundle.manifest.version == "1" and set(bundle.manifest.variants) == {"fp32", "int8"}
    assert bundle.manifest.variants["int8"].metrics["image_auroc"] >= 0.9
    assert not log.exists() or log.read_text() == "", f"network attempts: {log.read_text()}"
    verdict = Trust.from_config(SecurityConfig(trusted_keys=[public])).check(bundle)  # the whole bundle is signed
    assert verdict.signer == "export" and any(name.startswith("report/") for name in bundle.manifest.files)


def test_export_without_defects_is_a_clear_error(tmp_path, dataset):
    import shutil

    copy = tmp_path / "cat"
    shutil.copytree(dataset / "train", copy / "train")
    shutil.copytree(dataset / "test" / "good", copy / "test" / "good")
    proc = offline_cli("export", "--data", str(copy), "--out", str(tmp_path / "models"), log=tmp_path / "log")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "needs at least 2 good and 2 defect images" in proc.stderr


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from edge_ad.datasets.synthetic import DatasetSpec, make_dataset

    return make_dataset(tmp_path_factory.mktemp("d"), ["brick"], DatasetSpec(train=30, test_good=8, test_defect=3))[0]


def write_recipe(path: Path, data: Path, out: Path, **sections: str) -> Path:
    text = f"name: demo\ndata: {data}\nout: {out}\nseed: 3\n" + "".join(f"{k}: {v}\n" for k, v in sections.items())
    path.write_text(text)
    return path


def test_recipe_reproduces_identical_files_with_user_weights(tmp_path, small_data):
    from edge_ad.export.weights import packaged_weights

    weights = tmp_path / "my-backbone.pth"
    weights.write_bytes(packaged_weights("tf_efficientnet_lite0").read_bytes())
    recipe = write_recipe(tmp_path / "r.yaml", small_data, tmp_path / "a")
    first = offline_cli("export", "--recipe", str(recipe), log=tmp_path / "log")
    second = offline_cli(
        "export", "--recipe", str(recipe), "--out", str(tmp_path / "b"), "--weights", str(weights), log=tmp_path / "log"
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    a, b = load_bundle(tmp_path / "a" / "demo"), load_bundle(tmp_path / "b" / "demo")
    assert (
        a.manifest.model.weights == "efficientnet-lite0-57934424.pth" and b.manifest.model.weights == "my-backbone.pth"
    )
    model_files = [{k: v for k, v in m.files.items() if not k.startswith("report/")} for m in (a.manifest, b.manifest)]
    assert model_files[0] == model_files[1], "same data, recipe and seed must give byte-identical bundle files"
    assert a.manifest.variants["int8"].threshold == b.manifest.variants["int8"].threshold


def test_int8_gate_refuses_and_keeps_fp32(tmp_path, small_data, monkeypatch, capsys):
    # the bad INT8 model is made deterministic: the real NNCF model with its score negated (FakeQuantize ops kept)
    from edge_ad.cli import main
    from edge_ad.commissioning import commission
    from edge_ad.export import pipeline
    from tests.support.exports import negated_score

    real = pipeline.quantize

    def inverted(*args, **kwargs):
        return negated_score(real(*args, **kwargs))

    monkeypatch.setattr(pipeline, "quantize", inverted)
    args = ["export", "--data", str(small_data), "--out", str(tmp_path / "m"), "--name", "demo", "--max-drop", "0.01"]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "-> FAIL (INT8 rejected" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("edge-ad: error:")]
    assert len(errors) == 1 and "exceeds the budget 0.0100" in errors[0]
    bundle = load_bundle(tmp_path / "m" / "demo")
    assert bundle.manifest.variants["int8"].status == "rejected" and bundle.manifest.default_variant == "fp32"
    assert bundle.manifest.metrics["int8"]["gate"] == "rejected"
    assert bundle.manifest.metrics["int8"]["validation_auroc_drop"] > 0.5
    int8 = commission(bundle, "CPU").candidates["int8"]
    assert int8.reasons == ["the bundle has no accepted int8 IR"] and int8.p50_ms is None, "a rejected INT8 never runs"


def test_wrong_weights_file_is_refused(tmp_path, small_data):
    import torch

    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)} | {f"x{i}": torch.zeros(1) for i in range(400)}, bad)
    proc = offline_cli(
        "export", "--data", str(small_data), "--weights", str(bad), "--out", str(tmp_path), log=tmp_path / "l"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not match this backbone" in proc.stderr


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "{layers: [blocks.2, blocks.3]}",
            "model.layers: blocks.3 not a feature layer of tf_efficientnet_lite0; "
            "choose from blocks.0, blocks.1, blocks.2, blocks.4, blocks.6",
        ),
        ("{backbone: no_such_net}", "model.backbone: Unknown model (no_such_net)"),
    ],
)
def test_a_layer_or_backbone_timm_cannot_tap_is_one_line_before_training(tmp_path, small_data, model, expected):
    recipe = write_recipe(tmp_path / "r.yaml", small_data, tmp_path / "m", model=model)
    proc = offline_cli("export", "--recipe", str(recipe), log=tmp_path / "log")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-ad: error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and expected in errors[0]
    assert not (tmp_path / "m").exists()


def test_report_is_complete_and_rebuilds(exported, tmp_path):
    report = exported.bundle / "report"
    expected = {"roc.png", "pr.png", "confusion.json", "metrics.json", "scores.json", "report.html"}
    assert expected <= {p.name for p in report.iterdir()}
    assert {"histogram_fp32.png", "histogram_int8.png", "confusion_fp32.png", "confusion_int8.png"} <= {
        p.name for p in report.iterdir()
    }
    assert len(list((report / "overlays").glob("*.png"))) >= 2
    html = (report / "report.html").read_text()
    version = exported.manifest.version  # found: an exported report said "v0" while the manifest said 1
    assert f"<title>edge_ad report {exported.manifest.name} v{version}</title>" in html and version != "0"
    assert html.count("data:image/png;base64,") >= 8 and "http" not in html.replace("https://json", "")
    assert all(f"report/{p.name}" in exported.manifest.files for p in report.iterdir() if p.is_file())
    sections = ["Sample sizes", "95 % bootstrap intervals", "pixel AUROC", "AUPRO", "Operating points", "INT8 gate",
                "Latency at export", "Input size"]  # fmt: skip
    assert [s for s in sections if s not in html] == [] and "Pixel metrics skipped" not in html  # masks exist
    assert "false rejects at" in html.lower() and "escapes at" in html.lower()
    proc = offline_cli("report", str(exported.bundle), "--out", str(tmp_path / "again"), log=tmp_path / "log")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again" / "roc.png").is_file() and (tmp_path / "again" / "report.html").is_file()
    first, again = (json.loads((folder / "metrics.json").read_text()) for folder in (report, tmp_path / "again"))
    assert again["intervals"] == first["intervals"] and again["pixel"] == first["pixel"]  # same seed, same images
    load_bundle(exported.bundle)  # the installed report (signed with the bundle) was not touched


def test_an_int8_model_with_nothing_quantized_is_not_shipped_as_int8(tmp_path, small_data, monkeypatch, capsys):
    # accuracy-aware NNCF reverts layers to FP32 until the budget holds, possibly all of them
    from edge_ad.cli import main
    from edge_ad.export import pipeline

    monkeypatch.setattr(pipeline, "quantize", lambda fp32, *args, **kwargs: fp32)
    args = ["export", "--data", str(small_data), "--int8", "aware", "--out", str(tmp_path / "m"), "--name", "demo"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "INT8 (aware): no layer could stay quantized within the budget 0.0030 -> FP32 only" in out
    manifest = load_bundle(tmp_path / "m" / "demo").manifest
    assert list(manifest.variants) == ["fp32"] and manifest.default_variant == "fp32"
    assert manifest.metrics["int8"] == {"mode": "aware", "max_drop": 0.003, "gate": "nothing quantized"}
    assert not (tmp_path / "m" / "demo" / "1" / "model_int8.xml").exists()
