"""Hypothesis strategies of hostile record values: random bytes, and valid records mutated by
bit flips, cuts, insertions and hostile fragments (lone surrogates, nesting bombs, huge strings
and numbers, invalid UTF-8); plus `crashes`, which runs a decoder over values and counts what
it raised instead of returning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

# Pieces a hostile producer splices into otherwise valid JSON.
FRAGMENTS: tuple[bytes, ...] = (
    b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\udc00\\ud800", b"\xed\xa0\x80", b"\xff", b"\xc3", b"\x00",
    b"[" * 5_000, b"{\"a\":" * 3_000, b"[" * 100_000, b"\"" + b"x" * 70_000 + b"\"", b"1" * 5_000,
    b"1e999999", b"-0", b"NaN", b"-Infinity", b"1.0", b"200.0", b"true", b"\"200\"", b"null", b"{}", b"[]",
    b"\"1777896000\"", b"1777896000", b"\"2026-05-04 12:00:00Z\"", b"\"\\u0000\"", b",", b":", b"\"", b"\\",
)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """A valid seed record after 1-4 mutations."""
    value = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(value)))
        op = draw(st.sampled_from(["flip", "insert", "fragment", "cut", "truncate", "wrap"]))
        if op == "flip" and value:
            i = min(pos, len(value) - 1)
            value[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            value[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "fragment":
            value[pos:pos] = draw(st.sampled_from(FRAGMENTS))
        elif op == "cut":
            del value[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del value[pos:]
        else:  # the record inside a batch, or nested once more
            value = bytearray(b"[" + bytes(value) + b"]")
    return bytes(value)


def hostile(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, mutated seeds, and the fragments on their own."""
    return st.one_of(st.binary(max_size=512), mutated(seeds), st.sampled_from(FRAGMENTS))


def crashes(decode: Callable[[bytes], Any], values: Sequence[bytes],
            allowed: tuple[type[BaseException], ...] = ()) -> list[tuple[bytes, str]]:
    """(value, exception) for each value `decode` raised on (other than `allowed`)."""
    out = []
    for value in values:
        try:
            decode(value)
        except allowed:
            pass
        except Exception as exc:
            out.append((value[:120], repr(exc)[:300]))
    return out
