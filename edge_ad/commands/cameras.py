"""Technician commands: ``edge-ad cameras`` (what GenICam cameras this PC sees) and ``edge-ad snapshot``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

__all__ = ["add_parsers", "camera_table"]


def _exposure(value: float | None) -> str:
    return "-" if value is None else f"{value:g} µs"


def _state(camera) -> str:
    states = ["in use by another application"] if camera.in_use else []
    if camera.error:
        states.append(camera.error)
    return "; ".join(states) or "free"


def camera_table(cameras: list) -> list[str]:
    """The rows of ``edge-ad cameras``: a header and one line per :class:`CameraInfo`, columns aligned."""
    rows = [("ID", "VENDOR", "MODEL", "SERIAL", "ADDRESS", "PROTOCOL", "FORMAT", "EXPOSURE", "STATE")]
    rows += [
        (c.id, c.vendor, c.model, c.serial, c.address or "-", c.protocol, c.pixel_format or "-",
         _exposure(c.exposure_us), _state(c))
        for c in cameras
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]


def _cmd_cameras(args: argparse.Namespace) -> int:
    from edge_ad.capture.genicam.discovery import list_cameras

    cameras = list_cameras()
    if args.json:
        print(json.dumps([asdict(c) for c in cameras]))
        return 0
    if not cameras:
        print(
            "no GenICam camera found: GigE Vision cameras must be powered and on this PC's subnet (a firewall "
            "must let GVCP, UDP 3956, through); USB3 Vision cameras need a USB 3 port and udev permissions"
        )
        return 0
    for line in camera_table(cameras):
        print(line)
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from edge_ad.capture.snapshot import take_snapshot
    from edge_ad.config import load_config

    config = load_config(args.config)
    shot = take_snapshot(config, args.out, frames=args.frames, timeout_s=args.timeout)
    print(f"wrote {shot.path}: {shot.width}x{shot.height} frame from {shot.source}")
    if shot.fps is None:
        print(f"frame rate: - ({shot.frames} frame; read more with --frames to measure it)")
    else:
        print(f"frame rate: {shot.fps:.1f} fps ({shot.frames} frames in {shot.elapsed_s:.2f} s)")
    print(
        f"focus: {shot.focus:.1f} (variance of the Laplacian of the grey {shot.focus_region}; higher is sharper, "
        "compare only shots of the same scene and light)"
    )
    if shot.roi is not None:
        x, y, w, h = shot.roi
        print(f"ROI: x={x} y={y} {w}x{h}, drawn in green just outside the region the model sees")
    for note in shot.notes:
        print(note)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not positive")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``cameras`` and ``snapshot`` on the main parser."""
    p = sub.add_parser("cameras", help="list the GigE Vision / USB3 Vision cameras this PC sees (genicam extra)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_cameras)

    p = sub.add_parser(
        "snapshot", help="grab a frame through the configured source, draw the model's ROI, print fps and focus"
    )
    p.add_argument("--config", required=True, type=Path, help="station YAML file (camera and model sections)")
    p.add_argument("--out", type=Path, default=Path("snapshot.png"), help="image to write (default snapshot.png)")
    p.add_argument("--frames", type=_positive_int, default=10, help="frames to read for the frame rate (default 10)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds to wait for them (default 10)")
    p.set_defaults(func=_cmd_snapshot)
