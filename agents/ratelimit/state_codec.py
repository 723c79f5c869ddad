"""A compact binary form of :class:`KeyState` for the changelogged key table (no pickle).

Pickle would run whatever a changelog record asks for when a worker recovers; this format
only ever builds a KeyState, and is smaller and faster.

Version 2 (written): one version byte, then the state's float64 words little-endian, as
laid out in memory (:mod:`~agents.ratelimit.window`: header, offense words, runs), 8 bytes
a word: 81 bytes for a key seen once. Decoding checks the shape before trusting it: sizes,
head indexes, integral counts and flags, the banned flag against the offense.

Version 1 (still read, converted): a header ``version, h0, h1, s0, s1, s2, mark, over,
n_floats`` (run indexes, not word indexes), the run log's floats, then an offense flag and,
if set, the offense fields and its violation times. NaN stands for None.

>>> from agents.ratelimit import RateLimiter
>>> from schemas.ratelimit import TenantPolicy
>>> lim = RateLimiter([TenantPolicy(tenant_id="a", per_minute=1, violation_threshold=1)])
>>> _ = lim.decide_batch([("a", "10.0.0.1", 1e9), ("a", "10.0.0.1", 1e9 + 1)])
>>> st = lim.store["a:10.0.0.1"]
>>> decode_state(encode_state(st)) == st, st.banned
(True, True)
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from typing import Final

from agents.ratelimit.bans import W_BAN_END, W_FIXED, Offense
from agents.ratelimit.core import KeyState
from agents.ratelimit.window import DUE, FLAGS, HEADER, HEADS, S0, S1, S2, XLEN, refresh_due
from pipeline.runtime import table_codecs

__all__ = ["CODEC_NAME", "decode_state", "encode_state", "register_codec"]

CODEC_NAME: Final = "tw-keystate"
_VERSION: Final = 2
_V2: Final = b"\x02"
_H1: Final = 1 << 26  # heads packing, as in window.py
_FLAGS_MAX: Final = 1 << 29
_BANNED: Final = 1 << 28
_SWAP: Final = sys.byteorder != "little"
# version 1
_HEAD = struct.Struct("<BqqqqqqqI")
_OFF = struct.Struct("<qqBdddI")


def encode_state(st: KeyState) -> bytes:
    """The bytes of one key's state (version 2, see the module docstring)."""
    if _SWAP:
        st = KeyState(st)
        st.byteswap()
    return _V2 + st.tobytes()


def decode_state(data: bytes) -> KeyState:
    """The KeyState encoded by :func:`encode_state` (version 2 or 1); ValueError if ``data`` is not one."""
    if not data:
        raise ValueError("not an encoded key state: empty")
    if data[0] == 1:
        return _decode_v1(data)
    if data[0] != _VERSION:
        raise ValueError(f"not an encoded key state: unknown version {data[0]}")
    if (len(data) - 1) % 8 or len(data) - 1 < 8 * HEADER:
        raise ValueError("not an encoded key state: length mismatch")
    st = KeyState(())
    st.frombytes(memoryview(data)[1:])
    if _SWAP:
        st.byteswap()
    problem = _check(st)
    if problem:
        raise ValueError(f"not an encoded key state: {problem}")
    return st


def _int(x: float, lo: int, hi: int) -> bool:
    return x.is_integer() and lo <= x <= hi


def _check(st: KeyState) -> str | None:  # noqa: PLR0911  # one early return per check reads best
    # Everything the limiter relies on without checking again: sizes, indexes, integral counts.
    n = len(st)
    if not all(math.isfinite(st[i]) for i in (HEADS, XLEN, S0, S1, S2, DUE, FLAGS)):
        return "header not finite"
    if not _int(st[XLEN], 0, n - HEADER) or 0 < st[XLEN] < W_FIXED:
        return "bad offense length"
    base = HEADER + int(st[XLEN])
    if (n - base) % 3:
        return "runs not whole"
    if not _int(st[FLAGS], 0, _FLAGS_MAX - 1):
        return "bad flags"
    if bool(int(st[FLAGS]) & _BANNED) != bool(st[XLEN] and math.isfinite(st[HEADER + W_BAN_END])):
        return "banned flag disagrees with the ban"
    if not all(_int(st[i], 0, 2**53) for i in (S0, S1, S2)):
        return "bad counts"
    if n == base:
        return None if st[S2] == 0 else "counts without runs"
    if not _int(st[HEADS], 0, 2**53):
        return "bad heads"
    h0, h1 = int(st[HEADS]) % _H1, int(st[HEADS]) // _H1
    if not (base <= h1 <= h0 < n and (h0 - base) % 3 == 0 and (h1 - base) % 3 == 0) or st[S2] == 0:
        return "bad heads"
    return None


def _decode_v1(data: bytes) -> KeyState:
    try:
        _version, h0, h1, s0, s1, s2, mark, over, n = _HEAD.unpack_from(data)
        pos = _HEAD.size
        runs = array("d")
        runs.frombytes(data[pos:pos + 8 * n])
        pos += 8 * n
        off = None
        if data[pos] == 1:
            level, ban_level, manual, start, end, last_end, nv = _OFF.unpack_from(data, pos + 1)
            pos += 1 + _OFF.size
            off = Offense()
            off.level, off.ban_level, off.ban_manual = level, ban_level, bool(manual)
            off.ban_start, off.ban_end, off.last_ban_end = _opt(start), _opt(end), _opt(last_end)
            off.violations = list(array("d", data[pos:pos + 8 * nv]))
            pos += 8 * nv
        else:
            pos += 1
    except (struct.error, IndexError) as exc:
        raise ValueError(f"not an encoded key state: {exc}") from None
    if pos != len(data) or len(runs) != n or n % 3 or not (0 <= h1 <= h0 and (3 * h0 < n or n == 0)):
        raise ValueError("not an encoded key state: length mismatch")
    st = KeyState()
    st.set_offense(off)
    base = st.base
    st.extend(runs)
    st[HEADS] = float(base + 3 * h0 + (base + 3 * h1) * _H1) if n else 0.0
    st[S0], st[S1], st[S2] = float(s0), float(s1), float(s2)
    st.mark, st.over = mark, over
    refresh_due(st)
    return st


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def register_codec() -> None:
    """Register the Faust codec ``tw-keystate`` (idempotent)."""
    table_codecs.register_codec(CODEC_NAME, encode_state, decode_state)
