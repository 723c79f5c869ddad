"""The agent's small pure pieces: key partitioning, the table value codec, the CLI's parsing."""

from __future__ import annotations

import argparse

import pytest
from faust.serializers import codecs

from agents.ratelimit import KeyState, RateLimiter
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
    assert (args.action, args.target, args.duration) == ("ban", "203.0.113.9", 900.0)
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
