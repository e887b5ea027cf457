"""Inbound MQTT messages (PLC triggers, commands): bounded JSON parsing.

Anyone who may publish on a topic the daemon subscribes to can send anything: a megabyte, 1 000
nested brackets (``json.loads`` then raises ``RecursionError``), ``NaN``, a 10 000-digit number,
non-UTF-8 bytes. Each must end as a ``ValueError`` the handler counts, never as an exception that
reaches paho's network thread.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "load_json"]

MAX_DEPTH = 8  # nesting depth of inbound JSON (a trigger needs 1, a command 1)


def _depth(payload: bytes) -> int:
    """Deepest bracket nesting outside strings (a byte scan: no recursion, no allocation)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate keys in an object")  # no key named: the sender chooses it (log causes)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def load_json(payload: bytes, max_bytes: int, what: str) -> Any:
    """Parse a small JSON message or raise ``ValueError`` naming what is wrong with it.

    Refused: more than ``max_bytes``, nesting deeper than :data:`MAX_DEPTH`, not UTF-8, not JSON,
    ``NaN``/``Infinity``, integers longer than Python will convert, duplicate keys in an object (a
    reader that takes the first value would see another command than the station, which takes the last).
    """
    if len(payload) > max_bytes:
        raise ValueError(f"{what} of {len(payload)} bytes exceeds {max_bytes}")
    if _depth(payload) > MAX_DEPTH:
        raise ValueError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique)
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON ({str(exc).splitlines()[0][:80]})") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise ValueError(f"{what}: {str(exc).splitlines()[0][:80]}") from None
