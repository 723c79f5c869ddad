"""A compact binary form of :class:`KeyState` for the changelogged key table (no pickle).

Pickle would run whatever a changelog record asks for when a worker recovers; this format
only ever builds a KeyState, and is smaller and faster. Layout (little-endian): a header
``version, h0, h1, s0, s1, s2, mark, over, n_floats``, the run log's floats, then an
offense flag and, if set, the offense fields and its violation times. NaN stands for None.

>>> from agents.ratelimit import RateLimiter
>>> from schemas.ratelimit import TenantPolicy
>>> lim = RateLimiter([TenantPolicy(tenant_id="a", per_minute=1, violation_threshold=1)])
>>> _ = lim.decide_batch([("a", "10.0.0.1", 1e9), ("a", "10.0.0.1", 1e9 + 1)])
>>> st = lim.store["a:10.0.0.1"]
>>> decode_state(encode_state(st)) == st, st.off is not None and st.off.banned
(True, True)
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, Final

from agents.ratelimit.bans import Offense
from agents.ratelimit.core import KeyState

__all__ = ["CODEC_NAME", "decode_state", "encode_state", "register_codec"]

CODEC_NAME: Final = "tw-keystate"
_VERSION: Final = 1
_HEAD = struct.Struct("<BqqqqqqqI")
_OFF = struct.Struct("<qqBdddI")
_NAN = float("nan")


def _f(x: float | None) -> float:
    return _NAN if x is None else x


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def encode_state(st: KeyState) -> bytes:
    """The bytes of one key's state (see the module docstring for the layout)."""
    runs = st.runs
    parts = [_HEAD.pack(_VERSION, st.h0, st.h1, st.s0, st.s1, st.s2, st.mark, st.over, len(runs)), runs.tobytes()]
    off = st.off
    if off is None:
        parts.append(b"\x00")
    else:
        v = off.violations
        parts += [b"\x01", _OFF.pack(off.level, off.ban_level, off.ban_manual, _f(off.ban_start), _f(off.ban_end),
                                     _f(off.last_ban_end), len(v)), array("d", v).tobytes()]
    return b"".join(parts)


def decode_state(data: bytes) -> KeyState:
    """The KeyState encoded by :func:`encode_state`; ValueError if ``data`` is not one."""
    try:
        version, h0, h1, s0, s1, s2, mark, over, n = _HEAD.unpack_from(data)
        if version != _VERSION:
            raise ValueError(f"unknown key-state version {version}")
        pos = _HEAD.size
        runs = array("d")
        runs.frombytes(data[pos:pos + 8 * n])
        pos += 8 * n
        st = KeyState()
        st.runs, st.h0, st.h1, st.s0, st.s1, st.s2, st.mark, st.over = runs, h0, h1, s0, s1, s2, mark, over
        if data[pos] == 1:
            level, ban_level, manual, start, end, last_end, nv = _OFF.unpack_from(data, pos + 1)
            pos += 1 + _OFF.size
            off = st.off = Offense()
            off.level, off.ban_level, off.ban_manual = level, ban_level, bool(manual)
            off.ban_start, off.ban_end, off.last_ban_end = _opt(start), _opt(end), _opt(last_end)
            off.violations = list(array("d", data[pos:pos + 8 * nv]))
            pos += 8 * nv
        else:
            pos += 1
    except (struct.error, IndexError) as exc:
        raise ValueError(f"not an encoded key state: {exc}") from None
    if pos != len(data) or len(runs) != n:
        raise ValueError("not an encoded key state: length mismatch")
    return st


def register_codec() -> None:
    """Register the Faust codec ``tw-keystate`` (idempotent)."""
    from faust.serializers import codecs

    class KeyStateCodec(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            return encode_state(obj)

        def _loads(self, s: bytes) -> Any:
            return decode_state(s)

    codecs.register(CODEC_NAME, KeyStateCodec())
