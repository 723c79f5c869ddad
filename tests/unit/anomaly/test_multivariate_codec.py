"""The `hst` table's value codec: a TenantHST survives encode/decode and then scores identically."""

from __future__ import annotations

import pickle
import random
import struct
import zlib

import pytest
from faust.serializers import codecs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agents.anomaly.multivariate import HST_CODEC, TenantHST, TenantHSTValue, decode_hst, encode_hst, register_codec
from schemas.anomaly import MetricName

METRICS = [m.value for m in MetricName][:6]


def _points(rng: random.Random, n: int, metrics: list[str] = METRICS) -> list[tuple[str, float]]:
    return [(rng.choice(metrics), rng.gauss(100.0, 15.0) * (1 + (i % 97 == 0) * 5)) for i in range(n)]


def _feed(hst: TenantHST, points: list[tuple[str, float]]) -> list[float | None]:
    return [hst.score_and_learn(m, v) for m, v in points]


def _trained(n: int = 500, seed: int = 1, **params: int) -> TenantHST:
    hst = TenantHST(**params)
    _feed(hst, _points(random.Random(seed), n))
    return hst


def _splits(hst: TenantHST) -> list[tuple[str, float] | None]:
    nodes = [n for tree in hst.trees.trees for n in tree.iter_dfs()]
    return [(n.feature, n.threshold) if hasattr(n, "feature") else None for n in nodes]


def _resealed(data: bytes | bytearray) -> bytes:
    """`data` (without its checksum) with a fresh checksum: gets past the CRC to the other checks."""
    return bytes(data) + struct.pack("<I", zlib.crc32(data))


def test_round_trip_scores_identically_afterwards():
    """Encode/decode mid-stream; both copies then give exactly the same scores and state bytes."""
    a = _trained(500)
    data = encode_hst(a)
    b = decode_hst(data)
    assert encode_hst(b) == data
    tail = _points(random.Random(2), 400)
    scores = _feed(a, tail)
    assert sum(s is not None for s in scores) == 400
    assert _feed(b, tail) == scores  # exact float equality
    assert encode_hst(a) == encode_hst(b)


def test_tree_structure_is_rebuilt_from_the_seed():
    """The claim the codec rests on: river's trees (features, thresholds) are a function of the seed
    and first point's features, and only masses change; the rebuilt trees are the original's."""
    a = _trained(700, window_size=64)
    b = decode_hst(encode_hst(a))
    assert _splits(b) == _splits(a)
    assert [(n.l_mass, n.r_mass) for t in b.trees.trees for n in t.iter_dfs()] == \
           [(n.l_mass, n.r_mass) for t in a.trees.trees for n in t.iter_dfs()]
    assert (b.trees.counter, b.trees._first_window, b.n) == (a.trees.counter, a.trees._first_window, a.n)
    assert b.latest == a.latest
    assert list(b.latest) == list(a.latest)
    assert {k: (b.scaler.min[k].get(), b.scaler.max[k].get()) for k in b.latest} == \
           {k: (a.scaler.min[k].get(), a.scaler.max[k].get()) for k in a.latest}


@pytest.mark.parametrize("params", [{"window_size": 300}, {"window_size": 70_000, "n_trees": 2, "height": 3},
                                    {"window_size": 1}, {"n_trees": 3, "height": 2, "seed": 12345}])
def test_round_trip_other_parameters(params: dict[str, int]):
    """Masses wider than a byte (2 and 4 bytes), a window of one point, other shapes and seeds."""
    a = _trained(400, **params)
    b = decode_hst(encode_hst(a))
    tail = _points(random.Random(3), 200)
    assert _feed(b, tail) == _feed(a, tail)
    assert encode_hst(a) == encode_hst(b)


def test_round_trip_of_a_fresh_and_of_a_warming_up_tenant():
    """No point yet (no trees), and a first window not full yet (scores None)."""
    fresh = TenantHST()
    back = decode_hst(encode_hst(fresh))
    assert back.n == 0
    assert back.latest == {}
    warming = _trained(40)
    copy = decode_hst(encode_hst(warming))
    tail = _points(random.Random(4), 300)
    assert _feed(back, tail) == _feed(fresh, tail)
    assert _feed(copy, tail) == _feed(warming, tail)


def test_encoding_after_every_point_matches_an_uncached_encoding():
    """The encoder caches r_mass between pivots: it is never stale (windows of 5, many pivots)."""
    a = TenantHST(window_size=5, n_trees=3, height=3)
    for i, (m, v) in enumerate(_points(random.Random(5), 60)):
        a.score_and_learn(m, v)
        clone = pickle.loads(pickle.dumps(a))  # noqa: S301  # our own object, to compare encodings
        clone._enc = None
        assert encode_hst(a) == encode_hst(clone), i


def test_decoded_state_is_small():
    """The default 10 trees of height 6: a few kB (a pickle is ~45 kB)."""
    assert len(encode_hst(_trained(500))) < 4000


def test_the_tables_faust_codec_round_trips():
    """The `hst` table's value type names the registered codec, which encodes TenantHST (not pickle)."""
    register_codec()
    a = _trained(300)
    codec = TenantHSTValue._options.serializer
    assert codec == HST_CODEC
    raw = codecs.dumps(codec, a)
    assert raw[0] == 1
    b = TenantHSTValue.from_data(codecs.loads(codec, raw))
    assert isinstance(b, TenantHST)
    tail = _points(random.Random(6), 50)
    assert _feed(b, tail) == _feed(a, tail)


def test_decoding_refuses_what_it_did_not_write():
    """Empty, foreign, truncated, corrupt or inconsistent bytes raise ValueError with the reason."""
    data = encode_hst(_trained(300))
    body = bytearray(data[:-4])
    with pytest.raises(ValueError, match="empty"):
        decode_hst(b"")
    with pytest.raises(ValueError, match=r"unknown version 128 .*pickle"):
        decode_hst(pickle.dumps(_trained(10)))
    with pytest.raises(ValueError, match="unknown version 2"):
        decode_hst(b"\x02" + data[1:])
    with pytest.raises(ValueError, match="checksum"):
        decode_hst(data[:-1])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        decode_hst(bytes(flipped))
    with pytest.raises(ValueError, match="truncated"):
        decode_hst(b"\x01\x00\x00")
    with pytest.raises(ValueError, match="length mismatch"):
        decode_hst(_resealed(body[:-1]))
    with pytest.raises(ValueError, match="length mismatch"):
        decode_hst(_resealed(body + b"\x00"))
    root_l = len(body) - 2 * 10 * 127  # the first tree's root l_mass
    bad = bytearray(body)
    bad[root_l] += 1
    with pytest.raises(ValueError, match="root masses"):
        decode_hst(_resealed(bad))
    bad = bytearray(body)
    bad[-1] = 200  # a leaf's r_mass over the window of 128
    with pytest.raises(ValueError, match="exceeds the window"):
        decode_hst(_resealed(bad))
    bad = bytearray(body)
    bad[root_l - 4] ^= 1  # the structure fingerprint
    with pytest.raises(ValueError, match="tree structure"):
        decode_hst(_resealed(bad))
    fresh = bytearray(encode_hst(TenantHST())[:-4])
    fresh[3] = 200  # height: no trees yet, but the first point would build 10 trees of 2**201 nodes
    with pytest.raises(ValueError, match="implausible size"):
        decode_hst(_resealed(fresh))
    with pytest.raises(ValueError, match="cannot encode dict"):
        encode_hst({})  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 20), st.integers(0, 2**31)),
    points=st.lists(st.tuples(st.sampled_from(METRICS[:4]), st.floats(-1e6, 1e6)), min_size=1, max_size=120),
    cut=st.integers(0, 120),
)
def test_round_trip_property(shape: tuple[int, int, int, int], points: list[tuple[str, float]], cut: int):
    """Any small HST, cut anywhere in any stream: the decoded copy continues exactly as the original."""
    n_trees, height, window_size, seed = shape
    a = TenantHST(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
    _feed(a, points[:cut])
    data = encode_hst(a)
    b = decode_hst(data)
    assert encode_hst(b) == data
    assert _feed(b, points[cut:]) == _feed(a, points[cut:])
    assert encode_hst(a) == encode_hst(b)


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 10_000), value=st.integers(0, 255))
@example(pos=4144, value=16)  # a node's mass raised to the window size: decoded, then unencodable
def test_a_resealed_corruption_is_refused_or_decodes(pos: int, value: int):
    """Any one byte changed behind a valid checksum: a ValueError, or a TenantHST (e.g. a changed float)."""
    body = bytearray(encode_hst(_SMALL)[:-4])
    body[pos % len(body)] = value
    try:
        hst: TenantHST | None = decode_hst(_resealed(body))
    except ValueError as exc:
        hst, problem = None, str(exc)
    if hst is None:
        assert problem.startswith("not an encoded TenantHST")
    else:
        hst.score_and_learn(METRICS[0], 1.0)
        assert decode_hst(encode_hst(hst)).n == hst.n


_SMALL = _trained(100, n_trees=2, height=3, window_size=16)
