from __future__ import annotations

import io
import json
import sys

import yaml

from edge_ad.cli import main


def _station(tmp_path) -> str:
    path = tmp_path / "station.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "station": "press-3",
                "camera": {"source": "frames"},
                "model": {"path": "models/tiny"},
                "service": {"state_dir": "state"},
                "console": {"users_file": "console/users.json"},
            }
        )
    )
    return str(path)


def test_console_user_add_list_remove(tmp_path, monkeypatch, capsys):
    config = _station(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert main(["console-user", "add", "--config", config, "tom", "--role", "technician", "--password-stdin"]) == 0
    users = tmp_path / "console" / "users.json"  # relative to the config file, not to the working directory
    assert "added tom (technician)" in capsys.readouterr().out
    assert "a long password" not in users.read_text()
    assert json.loads(users.read_text())["tom"]["role"] == "technician"
    assert main(["console-user", "list", "--config", config]) == 0
    assert capsys.readouterr().out.split() == ["tom", "technician"]
    assert main(["console-user", "remove", "--config", config, "tom"]) == 0
    assert main(["console-user", "remove", "--config", config, "tom"]) == 2
    assert "no console user 'tom'" in capsys.readouterr().err


def test_a_short_password_is_refused(tmp_path, monkeypatch, capsys):
    config = _station(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["console-user", "add", "--config", config, "tom", "--password-stdin"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert not (tmp_path / "console" / "users.json").exists()


def test_missing_extra_gives_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the console extra were not installed
    assert main(["console", "--config", _station(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "pip install 'edge_ad[console]'" in err


def test_the_console_yields_the_cpu_to_the_station_in_every_thread():
    """console.cpu: idle (the default) puts every thread, earlier and later ones, under SCHED_IDLE: an open console
    raised the daemon's model p99 by 60 % at normal priority and not at all idle (BENCHMARKS.md, console cost)."""
    import subprocess
    import sys

    code = (
        "import os, threading, time\n"
        "from edge_ad.console.server import yield_cpu\n"
        "stop = threading.Event()\n"
        "early = threading.Thread(target=stop.wait); early.start()\n"
        "assert yield_cpu()\n"
        "late = threading.Thread(target=stop.wait); late.start()\n"
        "print(sorted({os.sched_getscheduler(int(t)) for t in os.listdir('/proc/self/task')}), os.SCHED_IDLE)\n"
        "stop.set()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    policies, idle = out.rsplit(" ", 1)
    assert policies == f"[{idle.strip()}]", out
