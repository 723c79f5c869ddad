"""Second opinion: one river HalfSpaceTrees per tenant over its min-max-scaled metrics.

Every metric point updates the tenant's latest value of that metric; the vector of latest
values (min-max scaled online, so HST's unit-cube assumption holds) is scored *before* it
is learnt. The score (0..1, higher = more unusual) is recorded on each anomaly.

Combination rule (documented, deliberately conservative): the univariate rule alone decides
*whether* there is an anomaly; the multivariate score only qualifies it. An anomaly whose
tenant score is ≥ `CORROBORATE_AT` is `corroborated`, else `rule_only`. HST cannot raise
an alert by itself: with a dozen metrics it mostly sees "some metric moved", which the
per-metric rules already say with a reason attached.

Durable state (the changelogged ``hst`` table; Faust codec ``tw-tenant-hst``, never pickle)
-------------------------------------------------------------------------------------------
River's HalfSpaceTrees builds its trees on the first ``learn_one`` from ``Random(seed)`` and
the sorted feature names of that first point (for a TenantHST that point holds one metric,
the tenant's first: every split is on it); afterwards only the node masses (``l_mass``,
``r_mass``), ``counter`` and ``_first_window`` change, and the random generator is not drawn
from again. So a TenantHST is stored as its parameters, scaler and counters plus two packed
mass arrays; the decoder rebuilds the tree structure by running river's own build with the
same seed and features (once per distinct structure, cached) and checks a CRC-32 fingerprint
of it (split features and thresholds) against the one stored, so a river upgrade that
changed the build is refused rather than mis-decoded.

Version 1, little-endian::

    B version (1) | H n_trees | B height | I window_size | q seed | Q n | I counter
    | B flags (1: first window, 2: trees built) | B n_metrics
    | n_metrics × (B name length, UTF-8 name, d latest, d min, d max)       latest + scaler
    | if built: B n_features, n_features × (B length, UTF-8 name), I structure fingerprint,
      l_mass then r_mass of every node (trees in order, each depth-first from its root),
      unsigned, 1, 2 or 4 bytes each (the smallest holding window_size)
    | I CRC-32 of all the bytes before

About 3 kB for the default 10 trees of height 6 and 11 metrics (a pickle is ~45 kB).
Decoding checks version, checksum, sizes, mass bounds and the roots' masses against the
counters, and raises ValueError for bytes it cannot have written. A decoded TenantHST builds its tree nodes
on first use: recovery decodes every changelog record of a key, and only the last one is used.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final

from agents.anomaly.river_state import first_window, set_first_window, set_tree_nodes, tree_nodes
from pipeline.runtime import table_codecs
from pipeline.runtime.table_codecs import TableValue
from schemas.anomaly import Verdict

if TYPE_CHECKING:
    from river import anomaly, preprocessing
    from river.tree.padded import PaddedBranch

__all__ = [
    "CORROBORATE_AT",
    "HST_CODEC",
    "TenantHST",
    "TenantHSTValue",
    "combine",
    "decode_hst",
    "encode_hst",
    "register_codec",
]

CORROBORATE_AT = 0.7
HST_CODEC: Final = "tw-tenant-hst"

_VERSION: Final = 1
_HEAD: Final = struct.Struct("<BHBIqQIBB")
_METRIC: Final = struct.Struct("<ddd")
_U32: Final = struct.Struct("<I")
_FIRST_WINDOW: Final = 1
_BUILT: Final = 2
_MAX_NODES: Final = 1 << 20  # ~200 MB of tree nodes: a header asking for more is corrupt (default: 1,270)
_SWAP: Final = sys.byteorder != "little"
_L_MASS = attrgetter("l_mass")
_R_MASS = attrgetter("r_mass")
_FEATURE = attrgetter("feature", "threshold")


def combine(hst_score: float | None) -> Verdict:
    """The verdict of an anomaly the univariate rule raised, given the tenant's HST score."""
    if hst_score is not None and hst_score >= CORROBORATE_AT:
        return Verdict.CORROBORATED
    return Verdict.RULE_ONLY


@lru_cache(maxsize=1)
def _river() -> Any:
    """river's anomaly, preprocessing and padded-tree modules, imported on first use.

    They pull in scipy and pandas: ~1 s of a worker's start-up, which a worker that has not
    scored a metric yet (or never does: `--capabilities ratelimit`) need not wait for.
    """
    from river import anomaly, preprocessing
    from river.tree import padded

    return SimpleNamespace(anomaly=anomaly, preprocessing=preprocessing, PaddedBranch=padded.PaddedBranch,
                           PaddedLeaf=padded.PaddedLeaf)


def preload_river() -> threading.Thread:
    """Import river's modules (`_river`) on a daemon thread, while the worker starts.

    Imported on the first metric point, they stalled the event loop for ~1 s in the middle of
    a replay; a worker's start-up mostly waits on the broker (group join, table recovery), so
    the import costs nothing there.
    """
    thread = threading.Thread(target=_river, name="preload-river", daemon=True)
    thread.start()
    return thread


class TenantHST:
    """Online multivariate outlier score of one tenant (table value: :func:`encode_hst`)."""

    def __init__(self, *, n_trees: int = 10, height: int = 6, window_size: int = 128, seed: int = 7) -> None:
        river = _river()
        self.scaler: preprocessing.MinMaxScaler = river.preprocessing.MinMaxScaler()
        self._trees: anomaly.HalfSpaceTrees = river.anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed)
        self.window_size = window_size
        self.latest: dict[str, float] = {}
        self.n = 0  # learn_one calls: the encoder's r_mass cache relies on it
        self._pending: _Pending | None = None  # decoded masses whose tree nodes are not built yet
        self._enc: _EncodeCache | None = None

    @property
    def trees(self) -> anomaly.HalfSpaceTrees:
        if self._pending is not None:
            self._materialize()
        return self._trees

    def score_and_learn(self, metric: str, value: float) -> float | None:
        """Score the tenant's vector with `metric` updated, then learn it. None while warming up."""
        if self._pending is not None:
            self._materialize()
        trees = self._trees
        self.latest[metric] = value
        # river's estimators are untyped; these four calls are its documented API.
        self.scaler.learn_one(self.latest)  # type: ignore[no-untyped-call]
        x = self.scaler.transform_one(self.latest)  # type: ignore[no-untyped-call]
        # HST scores 0 until its first reference window is full: report nothing meanwhile.
        score = float(trees.score_one(x)) if self.n >= self.window_size else None  # type: ignore[no-untyped-call]
        trees.learn_one(x)  # type: ignore[no-untyped-call]
        self.n += 1
        return score

    def _materialize(self) -> None:
        pending = self._pending
        assert pending is not None
        shape = pending.shape
        t = self._trees
        trees, nodes = shape.grow(pending.l_mass, pending.r_mass)
        for f in shape.features:  # as river's build leaves them (not read afterwards)
            t.limits[f]  # a defaultdict: the lookup inserts the default limits
        t.rng.setstate(shape.rng_state)
        set_tree_nodes(t, trees, nodes)
        self._enc = _EncodeCache([n for tree in nodes for n in tree], shape.section, pending.code,
                                 self.n // self.window_size, pending.r_raw)
        self._pending = None


# -- codec -------------------------------------------------------------------------------------


def _mass_code(window_size: int) -> str:
    """The array typecode of the masses: unsigned, the fewest bytes that hold `window_size`."""
    size = 1 if window_size <= 0xFF else 2 if window_size <= 0xFFFF else 4
    return next(c for c in "BHIL" if array(c).itemsize == size)


def _spec(nodes: list[Any]) -> tuple[tuple[str, float] | None, ...]:
    """Split feature and threshold of each node (None for a leaf), in the order given."""
    branch = _river().PaddedBranch
    return tuple(_FEATURE(n) if isinstance(n, branch) else None for n in nodes)


def _fingerprint(spec: tuple[tuple[str, float] | None, ...]) -> int:
    names = "\x1f".join("" if s is None else s[0] for s in spec).encode()
    thresholds = array("d", (-1.0 if s is None else s[1] for s in spec))
    if _SWAP:
        thresholds.byteswap()
    return zlib.crc32(thresholds.tobytes(), zlib.crc32(names))


def _names(names: tuple[str, ...] | list[str]) -> bytes:
    out = bytearray()
    for name in names:
        b = name.encode()
        if len(b) > 0xFF:
            raise ValueError(f"cannot encode TenantHST: name longer than 255 bytes: {name[:40]!r}…")
        out.append(len(b))
        out += b
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Shape:
    """The tree structure river builds from a seed and features: what decoding rebuilds."""

    features: tuple[str, ...]
    spec: tuple[tuple[str, float] | None, ...]  # every node, trees in order, depth-first
    tree_sizes: tuple[int, ...]
    fingerprint: int
    rng_state: Any
    section: bytes  # the encoded structure section: features and fingerprint

    def grow(self, l_mass: Any, r_mass: Any) -> tuple[list[PaddedBranch], list[list[Any]]]:
        """Fresh trees of this shape with the given masses; also each tree's nodes depth-first."""
        spec = self.spec
        river = _river()
        trees: list[Any] = []
        nodes: list[list[Any]] = []
        i = 0
        for size in self.tree_sizes:
            out: list[Any] = []
            root, i = _grow(spec, l_mass, r_mass, i, out, leaf=river.PaddedLeaf, branch=river.PaddedBranch)
            assert len(out) == size
            trees.append(root)
            nodes.append(out)
        return trees, nodes


def _grow(
    spec: Any, l_mass: Any, r_mass: Any, i: int, out: list[Any], *, leaf: Any, branch: Any
) -> tuple[Any, int]:
    pos = len(out)
    out.append(None)
    s = spec[i]
    if s is None:
        node: Any = leaf(r_mass=r_mass[i], l_mass=l_mass[i])
        j = i + 1
    else:
        left, j = _grow(spec, l_mass, r_mass, i + 1, out, leaf=leaf, branch=branch)
        right, j = _grow(spec, l_mass, r_mass, j, out, leaf=leaf, branch=branch)
        node = branch(left, right, s[0], s[1], l_mass[i], r_mass[i])
    out[pos] = node
    return node, j


@lru_cache(maxsize=64)
def _shape(n_trees: int, height: int, seed: int, features: tuple[str, ...]) -> _Shape:
    """River's own build with this seed and first point's features (its masses are discarded)."""
    hst: anomaly.HalfSpaceTrees = _river().anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, seed=seed)
    hst.learn_one(dict.fromkeys(features, 0.0))  # type: ignore[no-untyped-call]
    per_tree = [list(t.iter_dfs()) for t in hst.trees]  # type: ignore[no-untyped-call]
    spec = _spec([n for tree in per_tree for n in tree])
    fingerprint = _fingerprint(spec)
    section = bytes((len(features),)) + _names(features) + _U32.pack(fingerprint)
    return _Shape(features, spec, tuple(map(len, per_tree)), fingerprint, hst.rng.getstate(), section)


@dataclass(slots=True)
class _EncodeCache:
    """Per object, built on its first encoding: what only changes when the trees pivot."""

    nodes: list[Any]  # every node, in encoding order
    section: bytes
    code: str
    window: int  # n // window_size when `r_raw` was taken: r_mass only changes at a pivot
    r_raw: bytes


@dataclass(frozen=True, slots=True)
class _Pending:
    shape: _Shape
    code: str
    l_mass: Any  # bytes or array: indexable ints
    r_mass: Any
    r_raw: bytes


def _packed(code: str, values: Any) -> bytes:
    if code == "B":
        return bytes(values)  # a C loop; ValueError if a mass does not fit
    a = array(code, values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def _new_cache(hst: TenantHST) -> _EncodeCache:
    t = hst._trees
    nodes = [n for tree in tree_nodes(t) for n in tree]  # river's own depth-first node lists
    features = tuple(t.limits)
    section = bytes((len(features),)) + _names(features) + _U32.pack(_fingerprint(_spec(nodes)))
    return _EncodeCache(nodes, section, _mass_code(t.window_size), -1, b"")


def encode_hst(hst: TenantHST) -> bytes:
    """The bytes of one tenant's HST (version 1, see the module docstring); ValueError if unencodable."""
    if not isinstance(hst, TenantHST):
        raise ValueError(f"cannot encode {type(hst).__name__} as a TenantHST")
    t = hst.trees  # builds a decoded object's nodes first
    if t.seed is None or hst.scaler.window_size is not None or hst.window_size != t.window_size:
        raise ValueError("cannot encode TenantHST: needs a seed, a running (not rolling) scaler, one window size")
    if _n_nodes(t.n_trees, t.height) > _MAX_NODES:
        raise ValueError(f"cannot encode TenantHST: more than {_MAX_NODES} tree nodes")
    built = bool(t.trees)
    try:
        parts = [_HEAD.pack(_VERSION, t.n_trees, t.height, t.window_size, t.seed, hst.n, t.counter,
                            (_FIRST_WINDOW if first_window(t) else 0) | (_BUILT if built else 0), len(hst.latest))]
        mins, maxs = hst.scaler.min, hst.scaler.max
        for name, value in hst.latest.items():
            parts.append(_names((name,)))
            parts.append(_METRIC.pack(value, mins[name].get(), maxs[name].get()))
    except struct.error as exc:
        raise ValueError(f"cannot encode TenantHST: {exc}") from None
    if built:
        c = hst._enc or _new_cache(hst)
        hst._enc = c
        parts.append(c.section)
        parts.append(_packed(c.code, map(_L_MASS, c.nodes)))
        window = hst.n // t.window_size
        if c.window != window:
            c.r_raw, c.window = _packed(c.code, map(_R_MASS, c.nodes)), window
        parts.append(c.r_raw)
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError("not an encoded TenantHST: truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self) -> str:
        try:
            return bytes(self.take(self.take(1)[0])).decode()
        except UnicodeDecodeError:
            raise ValueError("not an encoded TenantHST: a name is not UTF-8") from None


def _check_masses(code: str, l_mass: Any, r_mass: Any, window_size: int, *, per_tree: int, counter: int,
                  root_r: int) -> None:
    """ValueError unless the masses are ones learning could have made: within the window, the
    roots matching the window counter, and no node above its tree's root (a corrupted mass under
    the window bound was pushed past it by the next point, and the state no longer encoded)."""
    if _exceeds(code, l_mass, window_size) or _exceeds(code, r_mass, window_size):
        raise ValueError("not an encoded TenantHST: a mass exceeds the window size")
    if any(m != counter for m in l_mass[::per_tree]) or any(m != root_r for m in r_mass[::per_tree]):
        raise ValueError("not an encoded TenantHST: root masses disagree with the window counter")
    for i in range(0, len(l_mass), per_tree):
        if max(l_mass[i:i + per_tree]) > counter or max(r_mass[i:i + per_tree]) > root_r:
            raise ValueError("not an encoded TenantHST: a node's mass exceeds its root's")


def decode_hst(data: bytes) -> TenantHST:
    """The TenantHST encoded by :func:`encode_hst`; ValueError if ``data`` is not one."""
    if not data:
        raise ValueError("not an encoded TenantHST: empty")
    if data[0] != _VERSION:
        hint = " (a pickle, from before the tw-tenant-hst codec?)" if data[0] == 0x80 else ""
        raise ValueError(f"not an encoded TenantHST: unknown version {data[0]}{hint}")
    mv = memoryview(data)
    if len(mv) < _HEAD.size + _U32.size:
        raise ValueError("not an encoded TenantHST: truncated")
    if zlib.crc32(mv[:-4]) != _U32.unpack_from(mv, len(mv) - 4)[0]:
        raise ValueError("not an encoded TenantHST: checksum mismatch (corrupt or truncated)")
    r = _Reader(mv[:-4])
    _v, n_trees, height, window_size, seed, n, counter, flags, n_metrics = _HEAD.unpack(r.take(_HEAD.size))
    if window_size < 1 or counter >= window_size or flags & ~(_FIRST_WINDOW | _BUILT):
        raise ValueError("not an encoded TenantHST: bad window, counter or flags")
    if _n_nodes(n_trees, height) > _MAX_NODES:  # checked even without trees yet: the first point builds them
        raise ValueError(f"not an encoded TenantHST: implausible size, {n_trees} trees of height {height}")
    hst = TenantHST(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
    for _ in range(n_metrics):
        name = r.name()
        value, lo, hi = _METRIC.unpack(r.take(_METRIC.size))
        if name in hst.latest:
            raise ValueError(f"not an encoded TenantHST: metric {name!r} twice")
        hst.latest[name] = value
        hst.scaler.min[name].min = lo
        hst.scaler.max[name].max = hi
    hst.n = n
    t = hst._trees
    t.counter = counter
    set_first_window(t, bool(flags & _FIRST_WINDOW))
    if flags & _BUILT:
        features = tuple(r.name() for _ in range(r.take(1)[0]))
        fingerprint = _U32.unpack(r.take(4))[0]
        code = _mass_code(window_size)
        per_tree = _n_nodes(1, height)
        size = n_trees * per_tree * array(code).itemsize
        if len(mv) - 4 - r.pos != 2 * size or not features or not n_trees:
            raise ValueError("not an encoded TenantHST: mass arrays' length mismatch")
        shape = _shape(n_trees, height, seed, features)
        if shape.fingerprint != fingerprint or shape.tree_sizes != (per_tree,) * n_trees:
            raise ValueError("not an encoded TenantHST: its tree structure is not what this river builds "
                             "from its seed (written by another river version?)")
        l_mass = _unpacked(code, bytes(r.take(size)))
        r_raw = bytes(r.take(size))
        r_mass = _unpacked(code, r_raw)
        _check_masses(code, l_mass, r_mass, window_size, per_tree=per_tree, counter=counter,
                      root_r=0 if flags & _FIRST_WINDOW else window_size)
        hst._pending = _Pending(shape, code, l_mass, r_mass, r_raw)
    if r.pos != len(mv) - 4:
        raise ValueError("not an encoded TenantHST: trailing bytes")
    return hst


def _n_nodes(n_trees: int, height: int) -> int:
    return n_trees * ((2 << height) - 1)  # river's trees are complete binary trees


def _exceeds(code: str, masses: Any, window_size: int) -> bool:
    if code == "B":  # deleting every byte value up to window_size leaves those above it (a C loop)
        return bool(masses.translate(None, bytes(range(window_size + 1))))
    return bool(masses) and max(masses) > window_size


def _unpacked(code: str, raw: bytes) -> Any:
    if code == "B":
        return raw
    a = array(code)
    a.frombytes(raw)
    if _SWAP:
        a.byteswap()
    return a


class TenantHSTValue(TableValue):
    """Faust value type of the ``hst`` table: TenantHST in its own binary form (never pickle)."""

    class _options:
        serializer = HST_CODEC


def register_codec() -> None:
    """Register the Faust codec ``tw-tenant-hst`` (idempotent)."""
    table_codecs.register_codec(HST_CODEC, encode_hst, decode_hst)

