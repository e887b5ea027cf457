"""Hot reload survives anything a new version throws: the watcher lives on and picks up the next version."""

from __future__ import annotations

import shutil
import time

from edge_ad.bundle.store import resolve_version_dir
from edge_ad.config import ModelConfig
from edge_ad.guard import Guard
from edge_ad.service import reload
from edge_ad.service.reload import ModelReloader
from tests.support.tiny_bundle import make_tiny_bundle


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_version_that_raises_anything_leaves_the_watcher_alive(tiny_models, tmp_path, monkeypatch):
    """Found: a new version whose manifest ROI lies outside the frame raised ValueError, the reload thread
    died, and no later version or SIGHUP was ever picked up (status said nothing)."""
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models, symlinks=True)
    real_load = reload.load_model

    def load(bundle, *args, **kwargs):
        if bundle.manifest.version == "2":
            raise ValueError("ROI (0, 0, 900, 900) lies outside the 64x64 frame")
        return real_load(bundle, *args, **kwargs)

    monkeypatch.setattr(reload, "load_model", load)
    errors: list[str] = []
    guard = Guard()
    config = ModelConfig(path=models / "tiny", device="CPU")
    reloader = ModelReloader(config, tmp_path / "state", resolve_version_dir(config.path), errors.append, 0.05, guard)
    reloader.start()
    try:
        make_tiny_bundle(models)  # version 2: raises a ValueError
        assert wait_for(lambda: errors), "the failed reload was not reported"
        assert errors == ["reload failed: ValueError: ROI (0, 0, 900, 900) lies outside the 64x64 frame"]
        monkeypatch.setattr(reload, "resolve_version_dir", lambda path: 1 / 0)  # a bug anywhere in the check
        time.sleep(0.3)
        assert guard.errors.get("model reload", 0) >= 1 and "ZeroDivisionError" in (guard.last or "")
        monkeypatch.setattr(reload, "resolve_version_dir", resolve_version_dir)
        make_tiny_bundle(models)  # version 3: the watcher is still there
        taken: list = []
        assert wait_for(lambda: bool(taken.append(reloader.take()) or taken[-1])), "version 3 never picked up"
        assert taken[-1][0].bundle.manifest.version == "3" and taken[-1][1].describe() == "not signed"
    finally:
        reloader.close()
