"""Staged rollout logic without a broker: planning, stages, gates, soak bounds, the state file, resume, durations."""

from __future__ import annotations

import json

import pytest

from edge_ad.errors import EdgeAdError
from edge_ad.fleet.rollout import Runner, report
from edge_ad.fleet.rollout_gates import current_stats, install_gate, ng_bound, runs_version, soak_violation
from edge_ad.fleet.rollout_plan import Options, Rollout, choose_canaries, make_plan, match_stations, parse_duration
from edge_ad.fleet.rollout_transport import load_keys

OFFER = {"bundle": "tiny", "version": "7", "manifest_sha256": "a" * 64, "url": "http://files/tiny-7.tar", "size": 10}


def status(state="online", model="tiny", version="1", run="r1", **extra):
    return {"schema": 2, "station": "x", "run": run, "state": state, "reason": "",
            "model": {"name": model, "version": version, "variant": "fp32", "precision": "f32"}, **extra}  # fmt: skip


def stats(version="1", ng_rate=0.01, run="r1", ts=1.0, **extra):
    return {"run": run, "ts": ts, "ng_rate": ng_rate, "model": {"name": "tiny", "version": version}, **extra}


DURATIONS = [("10m", 600), ("30s", 30), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("90", 90), ("0", 0)]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "10 min", "-5", "5d", "m"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(EdgeAdError, match="duration"):
        parse_duration(text)


def test_patterns_and_canaries():
    names = ["line3-b", "line3-a", "line4-a", "line3-c"]
    assert match_stations(names, "line3-*") == ["line3-a", "line3-b", "line3-c"]
    assert match_stations(names, "line4-a, line3-c") == ["line3-c", "line4-a"]
    assert choose_canaries(["c", "a", "b"], 2) == ["a", "b"]
    assert choose_canaries(["c", "a", "b"], 1, ["c"]) == ["c"]
    with pytest.raises(EdgeAdError, match="--canaries: d not among the online stations"):
        choose_canaries(["a"], 1, ["d"])
    with pytest.raises(EdgeAdError, match="--canary: give at least 1"):
        choose_canaries(["a"], 0)


def test_plan_stages_canaries_then_batches_and_lists_what_it_skips():
    statuses = {f"s{i}": status() for i in range(1, 7)} | {"s7": status("offline"), "s8": status(model="other")}
    statuses["zz"] = status()  # not matching
    plan = make_plan(OFFER, "edge_ad", "s*", statuses, Options(batch=2, allow_offline=True), canary=2)
    roles = {r.station: (r.role, r.stage, r.state) for r in plan.stations}
    assert roles == {
        "s1": ("canary", 0, "pending"), "s2": ("canary", 0, "pending"),
        "s3": ("rest", 1, "pending"), "s4": ("rest", 1, "pending"),
        "s5": ("rest", 2, "pending"), "s6": ("rest", 2, "pending"),
        "s7": ("rest", 3, "skipped"),  # offline: listed, offered in its batch if it is back by then
        "s8": ("rest", -1, "skipped"),  # another model: never part of it
    }  # fmt: skip
    assert [(n, [r.station for r in rs]) for n, rs in plan.stages()] == [
        (0, ["s1", "s2"]), (1, ["s3", "s4"]), (2, ["s5", "s6"]), (3, ["s7"])
    ]  # fmt: skip
    assert plan.record("s8").reason == "runs model other, not tiny"
    assert plan.id.startswith("tiny-v7-") and len(plan.id) <= 50


def test_an_offline_station_refuses_the_start_unless_allowed():
    statuses = {"a": status(), "b": status("camera_offline")}
    with pytest.raises(EdgeAdError, match=r"not online: b \(camera_offline\).*--allow-offline"):
        make_plan(OFFER, "edge_ad", "*", statuses, Options())
    with pytest.raises(EdgeAdError, match="no station on the broker matches"):
        make_plan(OFFER, "edge_ad", "line9-*", statuses, Options())


def test_install_gate():
    good = {"state": "installed", "active": True, "selftest": True, "acceptance": True, "version": "2"}
    assert install_gate(good) is None
    assert install_gate(good | {"acceptance": False}) == "acceptance did not pass (acceptance: False)"
    assert install_gate(good | {"selftest": None}).startswith("self-test did not pass")
    assert install_gate(good | {"active": False}) == "installed but not active"
    assert install_gate({"state": "failed", "reason": "acceptance: 20% false rejects"}) == (
        "install failed: acceptance: 20% false rejects"
    )


def test_ng_bound_is_twice_the_baseline_but_at_least_five_percent():
    assert ng_bound(None) == 0.05
    assert ng_bound(0.01) == 0.05
    assert ng_bound(0.04) == pytest.approx(0.08)
    assert ng_bound(0.04, override=0.02) == 0.02


def test_soak_violations():
    new = status(version="2")
    assert soak_violation(new, stats("2", 0.04), "tiny", "2", 0.05) is None
    too_many = soak_violation(new, stats("2", 0.06), "tiny", "2", 0.05)
    assert too_many == "NG rate 0.060 above the bound 0.050 during the soak"
    assert soak_violation(new, stats("1", 0.9), "tiny", "2", 0.05) is None  # the old version's figures
    assert soak_violation(new, stats("2", 0.9, run="old"), "tiny", "2", 0.05) is None  # not current
    assert soak_violation(new, stats("2", 0.9, stale=True), "tiny", "2", 0.05) is None
    drift = status(version="2", drift={"alarm": True, "median_ok_score": 0.9, "limit": 0.8})
    assert soak_violation(drift, None, "tiny", "2", 0.05).startswith("drift alarm")
    gone = status("offline", version="2") | {"reason": "connection lost"}
    assert soak_violation(gone, None, "tiny", "2", 0.05) == "went offline (connection lost) during the soak"
    assert soak_violation(status(version="1"), None, "tiny", "2", 0.05) == "runs v1, not the new v2, during the soak"


def test_current_stats_and_running_version():
    assert current_stats(status(), stats()) is not None
    assert current_stats(status("camera_offline"), stats()) is None
    assert runs_version(status(version="2"), "tiny", "2")
    assert not runs_version(status(version="2"), "tiny", None)
    assert not runs_version(status("offline", version="2"), "tiny", "2")


def test_state_file_round_trip(tmp_path):
    plan = make_plan(OFFER, "plant", "*", {"a": status(), "b": status()}, Options(soak_s=2, batch=1))
    plan.path = tmp_path / f"rollout-{plan.id}.json"
    plan.record("a").replies = ["downloading", "installed"]
    plan.save()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    assert json.loads(plan.path.read_text())["format"] == 1
    assert Rollout.load(plan.path) == plan
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(EdgeAdError, match=r"junk\.json: cannot read the rollout state"):
        Rollout.load(tmp_path / "junk.json")


class FakeLink:
    """Statuses only: enough for planning a resume or an abort target list."""

    def __init__(self, statuses):
        self.statuses = statuses

    def snapshot(self, station):
        return self.statuses.get(station), None


def test_resume_redoes_what_did_not_pass_and_rechecks_what_did(tmp_path):
    names = ["a", "b", "c", "d", "e"]
    plan = make_plan(OFFER, "edge_ad", "*", {n: status() for n in names}, Options(batch=2))
    plan.path = tmp_path / "rollout.json"
    plan.state = "stopped"
    for name, state, new, activated in [("a", "passed", "2", True), ("b", "passed", "2", True),
                                        ("c", "soaking", "2", True), ("d", "failed", None, False)]:  # fmt: skip
        r = plan.record(name)
        r.state, r.new, r.activated, r.command = state, new, activated, "x"
    link = FakeLink({"a": status(version="2"), "b": status(version="1"), "c": status(version="2"), "d": status()})
    Runner(plan, link, {}, say=lambda _: None).prepare_resume()
    states = {r.station: r.state for r in plan.stations}
    assert states == {"a": "passed", "b": "pending", "c": "installed", "d": "pending", "e": "pending"}
    assert plan.record("b").reason == "passed before but runs v1: offered again"
    assert [(n, [r.station for r in rs]) for n, rs in plan.stages()] == [(1, ["b", "c"]), (2, ["d", "e"])]
    plan.state = "completed"
    with pytest.raises(EdgeAdError, match="is completed: nothing to resume"):
        Runner(plan, link, {}, say=lambda _: None).prepare_resume()


def test_report_says_who_did_what(tmp_path):
    plan = make_plan(OFFER, "edge_ad", "*", {n: status() for n in "abc"}, Options(batch=1))
    plan.path = tmp_path / "rollout.json"
    a = plan.record("a")
    a.state, a.previous, a.new, a.command, a.selftest, a.acceptance = "rolled_back", "1", "2", "x", True, True
    a.max_ng_rate, a.ng_bound, a.soak_samples, a.reason = 0.3, 0.05, 4, "NG rate 0.300 above the bound 0.050"
    a.rollback = "v1 active again (left v2)"
    plan.state, plan.reason = "stopped", "canaries: a: NG rate 0.300 above the bound 0.050"
    text = report(plan)
    assert "v1 -> v2" in text and "NG max 0.300 <= 0.050 (4 stats)" in text and "v1 active again" in text
    assert text.count("never touched") == 2 and "STOPPED: canaries: a" in text and "--resume" in text


def test_keys_per_station_or_one_for_all(tmp_path):
    (tmp_path / "a.key").write_text("k" * 32 + "\n")
    (tmp_path / "b.key").write_text("short\n")
    common = tmp_path / "common.key"
    common.write_text("c" * 40 + "\n")
    assert load_keys(["a", "c"], tmp_path, common) == {"a": b"k" * 32, "c": b"c" * 40}
    with pytest.raises(EdgeAdError, match=r"no command key for c .*nothing was sent"):
        load_keys(["a", "c"], tmp_path)
    with pytest.raises(EdgeAdError, match="needs at least 32") as error:
        load_keys(["b"], tmp_path)
    assert "short" not in str(error.value)  # never print keys
