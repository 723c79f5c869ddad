"""Sliding-window request counters for one key: minute, hour and day over one shared run log.

Algorithm: a *run log*. Requests are kept as runs ``(first_ts, last_ts, count)`` in time
order. A new request extends the newest run while the run spans less than the minute
resolution, else it opens a new run. For each window ``k`` (60 s, 3600 s, 86400 s) the
counter keeps a head (first run not fully expired for that window) and the sum ``s_k`` of
counts from the head on.

When a run leaves the minute window it is merged into its predecessor if the merged run
spans at most the hour resolution; when it leaves the hour window, likewise at the day
resolution. So the log is fine where the short window needs it and coarse only where the
long windows can afford it: at most about ``60/r0 + 3600/r1 + 86400/r2`` runs per key.

Counting is exact except for the one run straddling a window's cutoff: a run whose
``first_ts`` is inside the window counts whole, one whose ``last_ts`` is outside counts zero
(both exact), and a straddling run of ``n`` requests counts its last request plus a
linear share of its ``n - 2`` inner requests. A run of one request (``first == last``) is
never straddling, so sparse keys are counted exactly; bursts (tight runs) are exact
outside their own few milliseconds. ``tests/unit/ratelimit/test_window_oracle.py``
measures wrong decisions against an exact sliding log.

Semantics: every observed request counts (also those that were throttled): the counter
answers "how many requests did this IP make in the last W seconds", the classic sliding
log. Time never goes backwards per key: a late event counts at the key's newest time.

Memory: a :class:`RunLog` *is* one flat ``array('d')`` (a million keys means a million of
them, so no other object per key): a header of :data:`HEADER` words, an optional section
owned by a subclass (the key's offenses, see :mod:`~agents.ratelimit.core`), then the runs,
3 words each::

    [heads, xlen, s0, s1, s2, due, flags | xlen owner words | f0, l0, c0, f1, l1, c1, ...]

``heads`` packs the absolute word indexes of the minute and hour head runs (the day head is
always the first run: older runs are dropped). ``due`` is a time at or before which a head
run may leave its window: the hot path compares one number instead of three heads and only
then takes the slow path. ``flags`` belongs to the subclass; a plain log leaves it 0.
Integers in the header are held exactly (all < 2**53). A key seen once is 10 words: 160
bytes with the array's and the garbage collector's headers.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Self, TypeVar

__all__ = ["DAY", "DUE", "FLAGS", "HEADER", "HOUR", "MINUTE", "S0", "S1", "S2", "WINDOWS", "RunLog", "SlidingWindows"]

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0
WINDOWS: Final = (MINUTE, HOUR, DAY)

# header word indexes
HEADS: Final = 0  # h0 + h1 * 2**26: absolute word indexes of the minute and hour head runs
XLEN: Final = 1  # words in the owner section between the header and the runs
S0: Final = 2  # requests from the minute head on (s1, s2 follow: hour head, day head)
S1: Final = 3
S2: Final = 4
DUE: Final = 5  # the slow path runs once a hit is at or after this time
FLAGS: Final = 6  # the owner's bits (KeyState: last decision, violation levels, banned)
HEADER: Final = 7
_H1: Final = 1 << 26  # heads packing: h0 < 2**26 words (a run log is far smaller)
_EMPTY: Final = (0.0,) * HEADER
_FIRST_HEADS: Final = float(HEADER + HEADER * _H1)  # both heads on the first run
_EARLY: Final = 2.0**-50  # ≥ 4 ulps of any double, relative

if TYPE_CHECKING:
    _Words = array[float]
else:
    _Words = array
_Log = TypeVar("_Log", bound="RunLog")


_new_words = array.__new__  # array's own constructor: no Python frame for a new key's log


def _restore(cls: type[_Log], data: bytes) -> _Log:
    log = cls(())
    log.frombytes(data)
    return log


class RunLog(_Words):
    """The counter state of one key: one flat ``array('d')`` (see the module docstring).

    No instance dict or slots: the only per-key object is the array itself.
    """

    __slots__ = ()

    def __new__(cls, words: Iterable[float] = _EMPTY) -> Self:
        return super().__new__(cls, "d", words)  # type: ignore[return-value]  # typeshed: array[float], not Self

    @classmethod
    def first_hit(cls, t: float) -> Self:
        """A log holding one request at ``t``, allocated at its exact size (most keys never grow)."""
        due = t + MINUTE
        due = due - due * _EARLY if due > 0 else _early(due)  # _early() inlined: new keys are a hot path too
        words = (_FIRST_HEADS, 0.0, 1.0, 1.0, 1.0, due, 0.0, t, t, 1.0)
        return _new_words(cls, "d", words)  # type: ignore[return-value]  # typeshed: array[float], not Self

    def __reduce_ex__(self, protocol: object) -> tuple[object, tuple[type[Self], bytes]]:
        return (_restore, (type(self), self.tobytes()))

    @property
    def base(self) -> int:
        """Word index of the first run."""
        return HEADER + int(self[XLEN])

    @property
    def last_ts(self) -> float | None:
        """Time of the newest request seen, or None for an empty log."""
        return self[-2] if self[S2] else None

    def owner_words(self) -> array[float]:
        """A copy of the owner section (empty if there is none)."""
        return self[HEADER : HEADER + int(self[XLEN])]

    def set_owner_words(self, words: array[float]) -> None:
        """Replace the owner section; run positions (and the heads) shift with it."""
        old = int(self[XLEN])
        shift = len(words) - old
        self[HEADER : HEADER + old] = words
        self[XLEN] = float(len(words))
        if shift and self[S2]:
            h = int(self[HEADS])
            self[HEADS] = float(h + shift + shift * _H1)


def _early(due: float) -> float:
    # `due` is a sum (last + W) while advance() tests `last <= t - W`. For epoch times t - W
    # is exact (W is whole seconds, a multiple of t's ulp), so the two agree; the few ulps
    # early are a cheap guard for other inputs (a hit that early runs the slow path for nothing).
    return due - abs(due) * _EARLY if due else -5e-324


def refresh_due(log: RunLog) -> None:
    """Recompute the ``due`` word from the heads (after loading a log built elsewhere)."""
    if not log[S2]:
        return
    h = int(log[HEADS])
    log[DUE] = _early(min(log[h % _H1 + 1] + MINUTE, log[h // _H1 + 1] + HOUR, log[log.base + 1] + DAY))


class SlidingWindows:
    """The rules over :class:`RunLog` states: resolution per window, hit, count, reset time.

    >>> w = SlidingWindows()
    >>> log = RunLog()
    >>> for t in (0.0, 10.0, 59.0):
    ...     _ = w.hit(log, t)
    >>> w.count(log, 0, 61.0), w.count(log, 1, 61.0)
    (2.0, 3.0)
    """

    __slots__ = ("r0", "r1", "r2")

    def __init__(self, resolution: tuple[float, float, float] = (0.5, 10.0, 240.0)) -> None:
        r0, r1, r2 = resolution
        if not 0 < r0 <= r1 <= r2 or r0 >= MINUTE or r1 >= HOUR or r2 >= DAY:
            raise ValueError(f"resolutions must grow and stay below their window: {resolution}")
        if 3 * (MINUTE / r0 + HOUR / r1 + DAY / r2) >= _H1 / 4:
            raise ValueError(f"resolutions too fine for the run log's head indexes: {resolution}")
        self.r0, self.r1, self.r2 = float(r0), float(r1), float(r2)

    def __getstate__(self) -> object:
        return (self.r0, self.r1, self.r2)

    def __setstate__(self, state: tuple[float, float, float]) -> None:
        self.r0, self.r1, self.r2 = state

    def hit(self, log: RunLog, t: float) -> float:
        """Count one request at ``t`` (clamped to the log's newest time); return the time used."""
        r = log
        if r[S2]:
            if t < r[-2]:  # noqa: PLR1730  # hot path: cheaper than a max() call
                t = r[-2]
            if t - r[-3] < self.r0:
                r[-2] = t
                r[-1] += 1.0
            else:
                r.extend((t, t, 1.0))
            r[S0] += 1.0
            r[S1] += 1.0
            r[S2] += 1.0
            if t >= r[DUE]:  # a head run may have left its window
                self.advance(r, t)
        else:
            base = float(r.base)
            r.extend((t, t, 1.0))
            r[HEADS] = base + base * _H1
            r[S0] = r[S1] = r[S2] = 1.0
            r[DUE] = _early(t + MINUTE)
        return t

    def advance(self, log: RunLog, t: float) -> None:
        """Slow path of :meth:`hit` at ``t``, once ``due`` is reached: expire, merge and drop runs."""
        # At most once per run leaving a window (and rarely for nothing).
        r = log
        base = HEADER + int(r[XLEN])
        h = int(r[HEADS])
        h0, h1 = h % _H1, h // _H1
        h2 = base
        cut = t - MINUTE
        r1 = self.r1
        while r[h0 + 1] <= cut:
            c = r[h0 + 2]
            r[S0] -= c
            # run h0 joins the hour-only region; merge with its predecessor if tight enough
            if h0 - 3 >= h1 and r[h0 + 1] - r[h0 - 3] <= r1:
                r[h0 - 2] = r[h0 + 1]
                r[h0 - 1] += c
                del r[h0 : h0 + 3]
            else:
                h0 += 3
        cut = t - HOUR
        r2 = self.r2
        while r[h1 + 1] <= cut:
            c = r[h1 + 2]
            r[S1] -= c
            if h1 - 3 >= h2 and r[h1 + 1] - r[h1 - 3] <= r2:
                r[h1 - 2] = r[h1 + 1]
                r[h1 - 1] += c
                del r[h1 : h1 + 3]
                h0 -= 3
            else:
                h1 += 3
        cut = t - DAY
        while r[h2 + 1] <= cut:
            r[S2] -= r[h2 + 2]
            h2 += 3
        if h2 > base:
            del r[base:h2]
            h0 -= h2 - base
            h1 -= h2 - base
        r[HEADS] = float(h0 + h1 * _H1)
        r[DUE] = _early(min(r[h0 + 1] + MINUTE, r[h1 + 1] + HOUR, r[base + 1] + DAY))

    def upper(self, log: RunLog, k: int) -> int:
        """Requests in window ``k`` as of the newest hit, counting the straddling run whole."""
        return int(log[S0 + k])

    def _head(self, log: RunLog, k: int) -> int:
        h = int(log[HEADS])
        return h % _H1 if k == 0 else h // _H1 if k == 1 else log.base

    def count(self, log: RunLog, k: int, t: float) -> float:
        """Estimated requests in window ``k`` (0 minute, 1 hour, 2 day) over ``(t - W, t]``.

        ``t`` may be later than the newest hit (timers); it must not be earlier.
        """
        r = log
        if not r[S2]:
            return 0.0
        i = self._head(r, k)
        total = r[S0 + k]
        cut = t - WINDOWS[k]
        n = len(r)
        while i < n and r[i + 1] <= cut:
            total -= r[i + 2]
            i += 3
        if i < n and r[i] <= cut:
            f, last, c = r[i], r[i + 1], r[i + 2]
            # first expired, last not: c - 1 expired at most; inner ones shared linearly
            total -= 1 + (c - 2) * (cut - f) / (last - f) if c > 2 else c - 1
        return total

    def reset_at(self, log: RunLog, k: int, t: float, limit: int) -> float:
        """Earliest time ≥ ``t`` when window ``k`` holds at most ``limit - 1`` requests (room for one).

        Conservative: a run counts until its last request leaves the window.
        """
        r = log
        need = r[S0 + k] - max(limit - 1, 0)
        if need <= 0:
            return t
        w = WINDOWS[k]
        for i in range(self._head(r, k), len(r), 3):
            need -= r[i + 2]
            if need <= 0:
                return max(t, r[i + 1] + w)
        return max(t, r[-2] + w)  # limit 0: only an empty window has room, and never enough

    def runs(self, log: RunLog) -> int:
        """Number of runs held (memory: 24 bytes each)."""
        return (len(log) - log.base) // 3
