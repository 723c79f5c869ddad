"""Reading state snapshots back, strictly: the JSON-ready dicts our table codecs carry.

A snapshot comes back from a changelog topic, which anyone who can produce to the broker can
write. `Fields` reads one with a type and a range for every field, and raises `SnapshotError`
(a ValueError) for anything else, so a restore either rebuilds a well-formed object or
refuses. Float arrays travel as base64 of little-endian doubles (a tenth of their JSON size).
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from array import array
from collections.abc import Iterable
from typing import Any

__all__ = ["Fields", "SnapshotError", "floats_from_text", "floats_to_text"]

_BIG_ENDIAN = sys.byteorder == "big"


class SnapshotError(ValueError):
    """A snapshot that is not what its codec writes: refused, never partly applied."""


def floats_to_text(values: Iterable[float]) -> str:
    data = array("d", values)
    if _BIG_ENDIAN:  # pragma: no cover - every supported platform is little-endian
        data.byteswap()
    return base64.b64encode(data.tobytes()).decode("ascii")


def floats_from_text(text: object, *, max_len: int, what: str = "floats") -> array[float]:
    """The doubles `floats_to_text` wrote; at most `max_len` of them."""
    if not isinstance(text, str) or len(text) > 4 * (8 * max_len + 2) // 3 + 4:
        raise SnapshotError(f"{what}: not a packed float array of at most {max_len} values")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SnapshotError(f"{what}: not base64") from None
    if len(raw) % 8 or len(raw) // 8 > max_len:
        raise SnapshotError(f"{what}: {len(raw)} bytes is not a whole number of ≤ {max_len} doubles")
    data = array("d")
    data.frombytes(raw)
    if _BIG_ENDIAN:  # pragma: no cover
        data.byteswap()
    return data


class Fields:
    """Typed, bounded access to one snapshot dict; every miss raises SnapshotError."""

    __slots__ = ("data", "what")

    def __init__(self, data: object, what: str) -> None:
        if not isinstance(data, dict):
            raise SnapshotError(f"{what}: expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.what = what

    def _get(self, name: str) -> Any:
        if name not in self.data:
            raise SnapshotError(f"{self.what}.{name}: missing")
        return self.data[name]

    def fail(self, name: str, why: str) -> SnapshotError:
        return SnapshotError(f"{self.what}.{name}: {why}")

    def integer(self, name: str, lo: int = 0, hi: int = 2**53) -> int:
        v = self._get(name)
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(name, f"expected an integer in [{lo}, {hi}], got {v!r:.40}")
        return v

    def number(self, name: str, lo: float = -math.inf, hi: float = math.inf, *, finite: bool = False) -> float:
        v = self._get(name)
        if type(v) not in (int, float) or math.isnan(v) or not lo <= v <= hi or (finite and math.isinf(v)):
            raise self.fail(name, f"expected a number in [{lo}, {hi}], got {v!r:.40}")
        return float(v)

    def opt_number(self, name: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
        return None if self._get(name) is None else self.number(name, lo, hi)

    def opt_integer(self, name: str, lo: int = 0, hi: int = 2**53) -> int | None:
        return None if self._get(name) is None else self.integer(name, lo, hi)

    def text(self, name: str, max_len: int = 256) -> str:
        v = self._get(name)
        if not isinstance(v, str) or len(v) > max_len:
            raise self.fail(name, f"expected a string of at most {max_len} characters")
        return v

    def items(self, name: str, max_len: int) -> list[Any]:
        v = self._get(name)
        if not isinstance(v, list) or len(v) > max_len:
            raise self.fail(name, f"expected a list of at most {max_len} items")
        return v

    def mapping(self, name: str, max_len: int) -> dict[str, Any]:
        v = self._get(name)
        if not isinstance(v, dict) or len(v) > max_len:
            raise self.fail(name, f"expected an object of at most {max_len} entries")
        return v

    def sub(self, name: str) -> Fields:
        return Fields(self._get(name), f"{self.what}.{name}")

    def floats(self, name: str, max_len: int) -> array[float]:
        return floats_from_text(self._get(name), max_len=max_len, what=f"{self.what}.{name}")

    def raw(self, name: str) -> Any:
        return self._get(name)
