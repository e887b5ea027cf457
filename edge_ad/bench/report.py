"""Markdown for ``edge-ad bench --bundle``: runtime, accuracy, end to end (and the console's cost), ours vs anomalib."""

from __future__ import annotations

from edge_ad.bench.runtime import runtime_markdown

__all__ = ["bench_markdown"]

THEIRS = {"anomalib_openvino": "anomalib OpenVINOInferencer", "anomalib_torch": "anomalib TorchInferencer"}


def _interval(low_high: list[float] | None, points: bool) -> str:
    """`` [low, high]`` of a bootstrap interval (AUROC, or a drop in points), or nothing."""
    if low_high is None:
        return ""
    low, high = low_high
    return f" [{100 * low:+.2f}, {100 * high:+.2f}]" if points else f" [{low:.4f}, {high:.4f}]"


def _accuracy(acc: dict) -> list[str]:
    lines = [
        "",
        f"Accuracy on {acc['test_images']} test images ({acc['defects']} defects) of {acc['data']} "
        "(95 % stratified bootstrap intervals, paired across variants):",
        "",
        "| variant | image AUROC | AUROC drop vs fp32 | verdicts as fp32 | largest score drift |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    intervals = acc.get("intervals", {})
    for name, value in acc["auroc"].items():
        vs, ci = acc.get("vs_fp32", {}).get(name), intervals.get(name, {})
        extra = (
            f"{_cell(vs['auroc_drop'], 100, ' pt', signed=True)}{_interval(ci.get('drop'), points=True)} | "
            f"{_cell(vs['verdict_agreement'], 100, ' %')} | {_cell(vs['drift_max'], 100, ' %')}"
            if vs
            else "— | — | —"
        )
        lines.append(f"| {name} | {value:.4f}{_interval(ci.get('auroc'), points=False)} | {extra} |")
    return lines


def _cell(value: float | None, scale: float, unit: str, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{scale * value:+.2f}{unit}" if signed else f"{scale * value:.2f}{unit}"


def _commissioning(c: dict) -> list[str]:
    lines = [
        "",
        f"Commissioning on this machine (the bundle's acceptance set): `auto` runs **{c['chosen']}** — {c['reason']}.",
        "",
        "| variant | precision | accepted | verdicts as fp32 | AUROC drop | largest score drift | p50 ms |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in c["candidates"].items():
        lines.append(
            f"| {name} | {r['precision']} | {'yes' if r['accepted'] else 'no'} | {_cell(r['agreement'], 100, ' %')} | "
            f"{_cell(r['auroc_drop'], 100, ' pt', signed=True)} | {_cell(r['drift_max'], 100, ' %')} | "
            f"{_cell(r['p50_ms'], 1, '')} |"
        )
    return lines


def _end_to_end(e2e: dict) -> list[str]:
    overhead = e2e["e2e_p50_ms"] - e2e["model_p50_ms"]
    return [
        "",
        f"End to end ({e2e['variant']}, {e2e['frames']} frames at {e2e['fps']:g} fps, frame grabbed → verdict "
        f"received from a local mosquitto; {e2e['received']} received):",
        "",
        "| e2e p50 ms | e2e p99 ms | model p50 / p99 ms | p50 overhead ms | p99 ÷ p50 | daemon peak RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {e2e['e2e_p50_ms']:.2f} | {e2e['e2e_p99_ms']:.2f} | {e2e['model_p50_ms']:.2f} / "
        f"{e2e.get('model_p99_ms', float('nan')):.2f} | {overhead:.2f} | "
        f"{e2e['e2e_p99_ms'] / e2e['e2e_p50_ms']:.2f} | {e2e['peak_rss_mb']:.0f} |",
    ]


def _anomalib(result: dict) -> list[str]:
    ref = result["anomalib"]
    ours = {row["variant"]: row for row in result["rows"]}
    auroc = result.get("accuracy", {}).get("auroc", {})
    mine = (result.get("commissioning") or {}).get("chosen") or "fp32"  # what 'variant: auto' runs here
    best = ours[mine]
    ours_layers = result.get("layers")
    same = ref.get("layers") in (None, ours_layers)
    layers = "layers" if same else f"layers {' + '.join(ref['layers'])} vs ours {' + '.join(ours_layers)}"
    lines = [
        "",
        f"Ours vs anomalib's deploy path (same data, backbone, input size, coreset ratio, {layers}; anomalib "
        f"bank {ref['bank_rows']} rows):",
        "",
        f"| path | p50 ms | p99 ms | image AUROC | ours {mine} ÷ theirs (p50) | speed-up of ours {mine} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in ours.items():
        lines.append(
            f"| edge_ad {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {auroc.get(name, float('nan')):.4f} | | |"
        )
    for key, label in THEIRS.items():
        row = ref["rows"][key]
        batch = f" (batch {row['batch']})" if row.get("batch", 1) > 1 else ""
        lines.append(
            f"| {label}{batch} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['auroc']:.4f} | "
            f"{best['p50_ms'] / row['p50_ms']:.3f} | {row['p50_ms'] / best['p50_ms']:.1f}× |"
        )
    ex = ref["export"]
    lines += [
        "",
        "| export | fit s (features + coreset) | coreset s |",
        "| --- | ---: | ---: |",
        f"| edge_ad (fast k-center) | {ex['edge_ad']['fit_s']:.1f} | {ex['edge_ad']['coreset_s']:.2f} |",
        f"| anomalib (greedy) | {ex['anomalib']['fit_s']:.1f} | {ex['anomalib']['coreset_s']:.2f} |",
    ]
    return lines


def bench_markdown(result: dict) -> str:
    """Every part of a bench result that was measured, as Markdown."""
    lines = [runtime_markdown(result).rstrip("\n")]
    if "commissioning" in result:
        lines += _commissioning(result["commissioning"])
    if "accuracy" in result:
        lines += _accuracy(result["accuracy"])
    if "end_to_end" in result:
        lines += _end_to_end(result["end_to_end"])
    if "console_cost" in result:
        from edge_ad.bench.console_cost import console_cost_markdown

        lines += console_cost_markdown(result["console_cost"])
    if "anomalib" in result:
        lines += _anomalib(result)
    return "\n".join(lines) + "\n"
