"""The agent's small pure pieces: key partitioning, the table value codec, the CLI's parsing."""

from __future__ import annotations

import argparse
import struct
from array import array

import pytest
from faust.serializers import codecs

from agents.ratelimit import Batch, KeyState, RateLimiter
from agents.ratelimit.agent import KeyStateValue
from agents.ratelimit.state_codec import decode_state, encode_state, register_codec
from pipeline.cli import build_parser
from pipeline.cli.ratelimit import limit_params, parse_duration
from pipeline.sdk import partition_for
from schemas.ratelimit import TenantPolicy


def test_key_partition_is_where_kafka_clients_send_the_key():
    """The partition the SDK and the limiter use for a key is aiokafka's (Faust's) default partitioner."""
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    keys = [f"t{i}:10.0.{i % 7}.{i}" for i in range(200)]
    assert [partition_for(k, 4) for k in keys] == [(aiokafka_murmur2(k.encode()) & 0x7FFFFFFF) % 4 for k in keys]
    assert len({partition_for(k, 4) for k in keys}) == 4


def test_key_state_survives_the_tables_codec():
    """A KeyState with counts, a ban and violations round-trips through the key table's Faust codec."""
    limiter = RateLimiter([TenantPolicy(tenant_id="a", per_minute=2, violation_threshold=1)])
    limiter.decide_batch([("a", "10.0.0.1", 1_800_000_000.0 + i) for i in range(5)])
    state = limiter.store["a:10.0.0.1"]
    assert state.off is not None
    assert state.off.banned
    register_codec()
    codec = KeyStateValue._options.serializer
    back = KeyStateValue.from_data(codecs.loads(codec, codecs.dumps(codec, state)))
    assert isinstance(back, KeyState)
    assert back == state


def test_cli_parses_durations_and_limits():
    """`ip ban --duration 15m` sends 900 s; `limits set` sends only the flags given, `off` as null."""
    assert [parse_duration(x) for x in ("90", "90s", "15m", "24h", "7d", "1.5h")] == [90, 90, 900, 86400,
                                                                                      604800, 5400]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")
    parser = build_parser()
    args = parser.parse_args(["ip", "ban", "203.0.113.9", "--tenant", "acme", "--duration", "15m"])
    assert (args.ip_command, args.ip, args.duration) == ("ban", "203.0.113.9", 900.0)
    args = parser.parse_args(["limits", "set", "--tenant", "acme", "--per-minute", "off", "--per-hour", "50",
                              "--ban-base-s", "10m"])
    assert limit_params(args) == {"per_minute": None, "per_hour": 50, "ban_base_s": 600.0}


def test_key_state_codec_refuses_what_it_did_not_write():
    """Truncated, padded or foreign bytes raise ValueError instead of building a wrong state."""
    limiter = RateLimiter([TenantPolicy(tenant_id="a", per_minute=2, violation_threshold=1)])
    limiter.decide_batch([("a", "10.0.0.1", 1_800_000_000.0 + i) for i in range(5)])
    data = encode_state(limiter.store["a:10.0.0.1"])
    for bad in (data[:-1], data + b"\x00", b"\x80\x04K\x01.", b""):
        with pytest.raises(ValueError, match="key state"):
            decode_state(bad)


def _encode_v1(st: KeyState) -> bytes:
    """The version-1 writer as it was (run indexes, an offense flag), for the decoder's compatibility test."""
    heads, base = int(st[0]), st.base
    h0, h1 = ((heads % (1 << 26)) - base) // 3, ((heads // (1 << 26)) - base) // 3
    runs = array("d", st[base:])
    s0, s1, s2 = (int(x) for x in st[2:5])
    parts = [struct.pack("<BqqqqqqqI", 1, h0, h1, s0, s1, s2, st.mark, st.over, len(runs)), runs.tobytes()]
    off = st.off
    if off is None:
        parts.append(b"\x00")
    else:
        def nan(x: float | None) -> float:
            return float("nan") if x is None else x

        parts += [b"\x01", struct.pack("<qqBdddI", off.level, off.ban_level, off.ban_manual, nan(off.ban_start),
                                       nan(off.ban_end), nan(off.last_ban_end), len(off.violations)),
                  array("d", off.violations).tobytes()]
    return b"".join(parts)


def test_key_state_codec_still_reads_version_1():
    """Table records written before the compact layout decode to a state that decides the same from there on."""
    policy = TenantPolicy(tenant_id="a", per_minute=3, violation_threshold=2, ban_base_s=30)
    live = RateLimiter([policy])
    t0 = 1_800_000_000.0
    history = [t0 + i * 0.2 for i in range(6)] + [t0 + 70 + i for i in range(5)] + [t0 + 200 + 7 * i for i in range(9)]
    live.decide_batch([("a", "10.0.0.1", t) for t in history])
    state = live.store["a:10.0.0.1"]
    assert state.off is not None
    assert state.off.violations or state.off.last_ban_end is not None
    old = decode_state(_encode_v1(state))
    assert list(old[:5]) == list(state[:5])  # heads, counts: all but the recomputed due time
    assert list(old[6:]) == list(state[6:])
    restored = RateLimiter([policy])
    restored.adopt("a:10.0.0.1", old)
    later = [("a", "10.0.0.1", t0 + 300 + 0.1 * i) for i in range(10)] + [("a", "10.0.0.1", t0 + 2000)]
    a, b = live.decide_batch(later), restored.decide_batch(later)
    assert (a.verdicts, a.decisions, a.bans) == (b.verdicts, b.decisions, b.bans)


def test_key_state_codec_keeps_the_last_order():
    """The last applied ban order survives the table codec: a replay after recovery changes nothing."""
    limiter = RateLimiter([TenantPolicy(tenant_id="a")])
    limiter.ban("a", "10.0.0.1", 1_800_000_000.0, 60.0, order_id="n-1")
    data = encode_state(limiter.store["a:10.0.0.1"])
    assert len(data) == 1 + 8 * (7 + 7)  # version, header, offense (no runs, no violations)
    recovered = RateLimiter([TenantPolicy(tenant_id="a")])
    recovered.adopt("a:10.0.0.1", decode_state(data))
    assert recovered.ban("a", "10.0.0.1", 1_800_000_030.0, 60.0, order_id="n-1") == Batch()
    assert [b.action for b in recovered.expire(1_800_000_060.0).bans] == ["ended"]


@pytest.mark.parametrize(("word", "value", "problem"), [
    (0, 0.5, "bad heads"),  # a head index that is not a whole word index
    (0, 7.0 + 9.0 * 2**26, "bad heads"),  # hour head after the minute head
    (1, 3.0, "offense length"),  # an offense section too short to be one
    (4, float("nan"), "not finite"),
    (6, float(1 << 28), "banned flag disagrees"),  # banned, but no ban recorded
])
def test_key_state_codec_refuses_inconsistent_words(word: int, value: float, problem: str):
    """Well-sized bytes whose words do not describe a state are refused, not trusted by the hot path."""
    limiter = RateLimiter([TenantPolicy(tenant_id="a")])
    limiter.decide_batch([("a", "10.0.0.1", 1_800_000_000.0 + 20 * i) for i in range(3)])
    words = array("d", limiter.store["a:10.0.0.1"])
    assert decode_state(b"\x02" + words.tobytes()) == words
    words[word] = value
    with pytest.raises(ValueError, match=problem):
        decode_state(b"\x02" + words.tobytes())
