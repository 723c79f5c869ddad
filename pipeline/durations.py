"""Durations as people type them (``90``, ``90s``, ``15m``, ``24h``, ``7d``, ``2w``): one parser
for the CLI and the console (pure).

>>> seconds("1.5h")
5400.0
"""

from __future__ import annotations

import re

__all__ = ["seconds"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FORM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")


def seconds(text: str) -> float:
    """Seconds in `text`; ValueError naming the accepted forms otherwise."""
    m = _FORM.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 24h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]
