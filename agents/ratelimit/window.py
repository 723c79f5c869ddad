"""Sliding-window request counters for one key: minute, hour and day over one shared run log.

Algorithm: a *run log*. Requests are kept as runs ``(first_ts, last_ts, count)`` in time
order, flat in one ``array('d')`` ``[f0, l0, c0, f1, l1, c1, ...]`` (24 bytes a run). A new request extends the newest
run while the run spans less than the minute resolution, else it opens a new run. For
each window ``k`` (60 s, 3600 s, 86400 s) the counter keeps a head index ``h_k`` (first run
not fully expired for that window) and the sum ``s_k`` of counts from the head on.

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
"""

from __future__ import annotations

from array import array
from typing import Final

__all__ = ["DAY", "HOUR", "MINUTE", "WINDOWS", "RunLog", "SlidingWindows"]

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0
WINDOWS: Final = (MINUTE, HOUR, DAY)


class RunLog:
    """The counter state of one key; plain slots so that millions of them stay small."""

    __slots__ = ("h0", "h1", "runs", "s0", "s1", "s2")

    def __init__(self) -> None:
        self.runs: array[float] = array("d")
        self.h0 = self.h1 = 0  # the day window's head is always run 0: older runs are dropped
        self.s0 = self.s1 = self.s2 = 0

    @property
    def last_ts(self) -> float | None:
        """Time of the newest request seen, or None for an empty log."""
        return self.runs[-2] if self.runs else None

    def _state(self) -> tuple[array[float], int, int, int, int, int]:
        return (self.runs, self.h0, self.h1, self.s0, self.s1, self.s2)

    def _set(self, state: tuple[array[float], int, int, int, int, int]) -> None:
        self.runs, self.h0, self.h1, self.s0, self.s1, self.s2 = state

    def __getstate__(self) -> object:
        return self._state()

    def __setstate__(self, state: tuple[array[float], int, int, int, int, int]) -> None:
        self._set(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunLog) and self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]  # mutable


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
        self.r0, self.r1, self.r2 = float(r0), float(r1), float(r2)

    def __getstate__(self) -> object:
        return (self.r0, self.r1, self.r2)

    def __setstate__(self, state: tuple[float, float, float]) -> None:
        self.r0, self.r1, self.r2 = state

    def hit(self, log: RunLog, t: float) -> float:
        """Count one request at ``t`` (clamped to the log's newest time); return the time used."""
        r = log.runs
        n = len(r)
        if n:
            if t < r[n - 2]:  # noqa: PLR1730  # hot path: cheaper than a max() call
                t = r[n - 2]
            if t - r[n - 3] < self.r0:
                r[n - 2] = t
                r[n - 1] += 1
            else:
                r.extend((t, t, 1.0))
        else:
            r = log.runs = array("d", (t, t, 1.0))  # sized exactly: most keys never grow
        log.s0 += 1
        log.s1 += 1
        log.s2 += 1
        # one comparison per window: a head run leaving its window sends us to the slow path
        if (
            r[3 * log.h0 + 1] <= t - MINUTE
            or r[3 * log.h1 + 1] <= t - HOUR
            or r[1] <= t - DAY
        ):
            self._advance(log, t)
        return t

    def _advance(self, log: RunLog, t: float) -> None:
        # Slow path, at most once per run leaving a window: expire, merge, drop.
        r = log.runs
        h0, h1, h2 = log.h0, log.h1, 0
        cut = t - MINUTE
        r1 = self.r1
        while r[3 * h0 + 1] <= cut:
            i = 3 * h0
            log.s0 -= int(r[i + 2])
            # run h0 joins the hour-only region; merge with its predecessor if tight enough
            if h0 - 1 >= h1 and r[i + 1] - r[i - 3] <= r1:
                r[i - 2] = r[i + 1]
                r[i - 1] += r[i + 2]
                del r[i : i + 3]
            else:
                h0 += 1
        cut = t - HOUR
        r2 = self.r2
        while r[3 * h1 + 1] <= cut:
            i = 3 * h1
            log.s1 -= int(r[i + 2])
            if h1 - 1 >= h2 and r[i + 1] - r[i - 3] <= r2:
                r[i - 2] = r[i + 1]
                r[i - 1] += r[i + 2]
                del r[i : i + 3]
                h0 -= 1
            else:
                h1 += 1
        cut = t - DAY
        while r[3 * h2 + 1] <= cut:
            log.s2 -= int(r[3 * h2 + 2])
            h2 += 1
        if h2:
            del r[: 3 * h2]
            h0 -= h2
            h1 -= h2
            h2 = 0
        log.h0, log.h1 = h0, h1

    def upper(self, log: RunLog, k: int) -> int:
        """Requests in window ``k`` as of the newest hit, counting the straddling run whole."""
        return log.s0 if k == 0 else log.s1 if k == 1 else log.s2

    def count(self, log: RunLog, k: int, t: float) -> float:
        """Estimated requests in window ``k`` (0 minute, 1 hour, 2 day) over ``(t - W, t]``.

        ``t`` may be later than the newest hit (timers); it must not be earlier.
        """
        r = log.runs
        if not r:
            return 0.0
        h = log.h0 if k == 0 else log.h1 if k == 1 else 0
        total: float = log.s0 if k == 0 else log.s1 if k == 1 else log.s2
        cut = t - WINDOWS[k]
        n = len(r)
        i = 3 * h
        while i < n and r[i + 1] <= cut:
            total -= r[i + 2]
            i += 3
        if i < n and r[i] <= cut:
            f, last, c = r[i], r[i + 1], r[i + 2]
            # first expired, last not: c - 1 expired at most; inner ones shared linearly
            total -= 1 + (c - 2) * (cut - f) / (last - f) if c > 2 else c - 1
        return float(total)

    def reset_at(self, log: RunLog, k: int, t: float, limit: int) -> float:
        """Earliest time ≥ ``t`` when window ``k`` holds at most ``limit - 1`` requests (room for one).

        Conservative: a run counts until its last request leaves the window.
        """
        r = log.runs
        h = log.h0 if k == 0 else log.h1 if k == 1 else 0
        total = log.s0 if k == 0 else log.s1 if k == 1 else log.s2
        need: float = total - max(limit - 1, 0)
        if need <= 0:
            return t
        w = WINDOWS[k]
        for i in range(3 * h, len(r), 3):
            need -= r[i + 2]
            if need <= 0:
                return max(t, r[i + 1] + w)
        return max(t, r[-2] + w)  # limit 0: only an empty window has room, and never enough

    def runs(self, log: RunLog) -> int:
        """Number of runs held (memory: 24 bytes each)."""
        return len(log.runs) // 3
