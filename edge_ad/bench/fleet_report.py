"""Markdown for ``edge-ad bench fleet``: one row per run, how the numbers grow with the fleet, the per-station rate."""

from __future__ import annotations

__all__ = ["fleet_markdown"]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def _brokers(run: dict) -> str:
    if not run["bridged"]:
        return "1"
    cpu = run["cpu_pct"]["brokers"]
    return f"2 bridged ({cpu['stations']:.1f} + {cpu['consumers']:.1f} % CPU)"


def _row(run: dict) -> str:
    v, lat, cpu, rss, per, start = (
        run["verdicts"], run["latency_ms"], run["cpu_pct"], run["rss_kb"], run["per_station"], run["startup_s"]
    )  # fmt: skip
    consumers = str(run["consumers"]) if run["consumers"] == 1 else f"{run['consumers']} shared"
    return (
        f"| {run['stations']} | {_brokers(run)} | {consumers} | {v['produced']} | {v['received']} | {v['lost']} | "
        f"{v['duplicates']} | {_ms(lat['p50'])} | {_ms(lat['p99'])} | {cpu['broker_total']:.1f} | "
        f"{cpu['daemons_total']:.0f} / {cpu['machine']:.0f} | {_mb(rss['sum'])} | {_mb(rss['mean'])} / "
        f"{_mb(rss['max'])} | {per['msgs_per_s']:.2f} | {per['bytes_per_s']:.0f} | {start['p50']:.1f} / "
        f"{start['all']:.0f} |"
    )


def _growth(runs: list[dict]) -> list[str]:
    """How broker CPU, memory and latency grow from the smallest to the largest single-broker run."""
    single = sorted((r for r in runs if not r["bridged"] and r["consumers"] == 1), key=lambda r: r["stations"])
    if len(single) < 2:
        return []
    a, b = single[0], single[-1]
    factor = b["stations"] / a["stations"]

    def per(run: dict) -> float:
        return run["cpu_pct"]["broker_total"] / run["stations"]

    return [
        "",
        f"From {a['stations']} to {b['stations']} stations (×{factor:g}): broker CPU "
        f"{a['cpu_pct']['broker_total']:.1f} → {b['cpu_pct']['broker_total']:.1f} % of a core "
        f"({per(a):.3f} → {per(b):.3f} % per station), daemon memory {_mb(a['rss_kb']['sum'])} → "
        f"{_mb(b['rss_kb']['sum'])} MB ({_mb(a['rss_kb']['mean'])} → {_mb(b['rss_kb']['mean'])} MB per daemon), "
        f"frame → subscriber p50 {_ms(a['latency_ms']['p50'])} → {_ms(b['latency_ms']['p50'])} ms, "
        f"p99 {_ms(a['latency_ms']['p99'])} → {_ms(b['latency_ms']['p99'])} ms.",
    ]


def fleet_markdown(runs: list[dict], command: str, machine: dict, date: str) -> str:
    """The runs as a Markdown table with the machine, command and date they were measured with."""
    flags = " ".join(machine.get("cpu_flags", [])) or "none of note"
    first = runs[0]
    lines = [
        f"**Command** ({date}; {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, flags `{flags}`; "
        f"Python {machine.get('python', '?')}, OpenVINO {machine.get('openvino', '?')}; bundle {first['bundle']}, "
        f"{first['fps']:g} fps per station, {first['seconds']:g} s measured once all were online):",
        "",
        "```bash",
        command,
        "```",
        "",
        "| stations | brokers | consumers | verdicts produced | received | lost | duplicates | frame → subscriber "
        "p50 ms | p99 ms | broker CPU % | daemons / machine CPU % | daemon RSS sum MB | RSS mean / max MB | "
        "msgs/s per station | bytes/s per station | start-up s: p50 / all |",
        "| ---: | --- | --- " + "| ---: " * 13 + "|",
    ]
    lines += [_row(run) for run in runs]
    lines += _growth(runs)
    shared = [r for r in runs if r["consumers"] > 1]
    for run in shared:
        per_consumer = " / ".join(str(n) for n in run["verdicts"]["per_consumer"])
        lines += ["", f"Shared group at {run['stations']} stations: the consumers received {per_consumer} verdicts."]
    for run in runs:
        if "rollout" in run:  # measured by the phase bench_fleet(rollout=...) ran on the live fleet
            r = run["rollout"]
            outcome = "every station passed" if r["exit"] == 0 else f"stopped, exit {r['exit']} (see the JSON)"
            timed = (
                f"{r['seconds']:.1f} s to version {r['version']} with {r['canaries']} canaries and a {r['soak']} soak, "
                f"{outcome}; {r['on_version']} of {r['stations']} stations then ran it"
            )
            lines += ["", f"Rollout to {run['stations']} stations: {timed}."]
    per = runs[-1]["per_station"]
    lines += [
        "",
        f"Per station ({runs[-1]['stations']} stations): {per['verdicts_per_s']:.2f} verdicts/s, "
        f"{per['msgs_per_s']:.2f} messages/s with status and stats, {per['bytes_per_s']:.0f} bytes/s of topic + "
        f"payload (a verdict {per['verdict_bytes']:.0f} bytes); MQTT framing adds about 10 bytes a message, and "
        "QoS 1 a 4-byte PUBACK each way.",
    ]
    return "\n".join(lines) + "\n"
