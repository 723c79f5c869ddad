"""Violation history and bans of one key: thresholds, escalation, manual ban/unban, expiry timers.

Escalation: the n-th automatic ban of an IP (counting from 0, forgotten ``ban_forget_s``
after the previous ban ended) lasts ``min(ban_base_s * 2**n, ban_max_s)``. Manual bans
take the duration they are given (default ``ban_max_s``) and do not raise the level.
Bans end in event time: :class:`BanTimers` is a heap of due times, so the limiter finds
the bans (and throttles) that end by ``now`` in O(due · log n), never by scanning keys.

Manual ban orders carry an id; an :class:`Offense` remembers a 52-bit tag of the last one
applied (:func:`order_tag`) so that a replayed order is recognised and changes nothing.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from array import array
from collections.abc import Sequence
from typing import Final, Literal

from schemas.ratelimit import TenantPolicy

__all__ = ["BAN_END", "THROTTLE_END", "BanTimers", "Offense", "ban_duration", "order_tag"]

BAN_END: Final = 0
THROTTLE_END: Final = 1

# An Offense as words (inside a KeyState): these fixed fields, then the violation times.
W_LEVEL, W_BAN_LEVEL, W_MANUAL, W_BAN_START, W_BAN_END, W_LAST_BAN_END, W_ORDER = range(7)
W_FIXED: Final = 7
_NONE: Final = -math.inf  # None as a word (not NaN: words are compared for equality)


def order_tag(order_id: str) -> int:
    """A stable 52-bit tag of an order id (exact in a float word; never 0, which means none).

    >>> order_tag("nonce-1") == order_tag("nonce-1") != order_tag("nonce-2")
    True
    """
    digest = hashlib.blake2b(order_id.encode(), digest_size=8, person=b"tw-order").digest()
    return (int.from_bytes(digest, "little") >> 12) or 1


def _word(x: float | None) -> float:
    return _NONE if x is None else x


def _opt(x: float) -> float | None:
    return None if x == _NONE else x


class Offense:
    """Violations and bans of one key; only keys that ever misbehaved carry one."""

    __slots__ = ("ban_end", "ban_level", "ban_manual", "ban_start", "last_ban_end", "level", "order", "violations")

    def __init__(self) -> None:
        self.violations: list[float] = []  # recent violation times, pruned to the period
        self.level = 0  # automatic bans so far (escalation); reset after ban_forget_s
        self.ban_start: float | None = None  # active ban, if any
        self.ban_end: float | None = None
        self.ban_level = 0
        self.ban_manual = False
        self.last_ban_end: float | None = None
        self.order = 0  # order_tag() of the last manual ban/unban order applied; 0 = none

    def __getstate__(self) -> object:
        return (self.violations, self.level, self.ban_start, self.ban_end, self.ban_level,
                self.ban_manual, self.last_ban_end, self.order)

    def __setstate__(
        self, s: tuple[list[float], int, float | None, float | None, int, bool, float | None, int]
    ) -> None:
        (self.violations, self.level, self.ban_start, self.ban_end, self.ban_level,
         self.ban_manual, self.last_ban_end, self.order) = s

    def to_words(self) -> array[float]:
        """The offense as float words (integers and times exact): see ``W_*`` for the layout."""
        w = array("d", (float(self.level), float(self.ban_level), float(self.ban_manual), _word(self.ban_start),
                        _word(self.ban_end), _word(self.last_ban_end), float(self.order)))
        w.extend(self.violations)
        return w

    @classmethod
    def from_words(cls, w: Sequence[float]) -> Offense:
        """The offense written by :meth:`to_words`."""
        off = cls()
        off.level, off.ban_level, off.ban_manual = int(w[W_LEVEL]), int(w[W_BAN_LEVEL]), bool(w[W_MANUAL])
        off.ban_start, off.ban_end = _opt(w[W_BAN_START]), _opt(w[W_BAN_END])
        off.last_ban_end = _opt(w[W_LAST_BAN_END])
        off.order = int(w[W_ORDER])
        off.violations = list(w[W_FIXED:])
        return off

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Offense) and self.__getstate__() == other.__getstate__()

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def banned(self) -> bool:
        """Whether a ban is in force (until someone ends it at or after ``ban_end``)."""
        return self.ban_end is not None

    def violate(self, t: float, policy: TenantPolicy) -> bool:
        """Record a violation at ``t``; True when the violations in the period reach the threshold."""
        v = self.violations
        v.append(t)
        cut = t - policy.violation_period_s
        while v and v[0] <= cut:
            v.pop(0)
        return len(v) >= policy.violation_threshold

    def start_ban(self, t: float, policy: TenantPolicy, manual: bool = False, duration_s: float | None = None) -> float:
        """Ban from ``t``; returns the end time. Automatic bans escalate, manual ones do not."""
        if self.last_ban_end is not None and t - self.last_ban_end >= policy.ban_forget_s:
            self.level = 0
        if manual:
            dur = policy.ban_max_s if duration_s is None else duration_s
            self.ban_level = self.level
        else:
            dur = ban_duration(self.level, policy)
            self.ban_level = self.level
            self.level += 1
        self.ban_start, self.ban_end, self.ban_manual = t, t + dur, manual
        self.violations.clear()
        return t + dur

    def end_ban(self, t: float) -> tuple[float, float, int, Literal["auto", "manual"]]:
        """End the active ban at ``t``: (start, end, level, reason) of the ban that ended."""
        assert self.ban_start is not None
        out: tuple[float, float, int, Literal["auto", "manual"]] = (
            self.ban_start, t, self.ban_level, "manual" if self.ban_manual else "auto")
        self.ban_start = self.ban_end = None
        self.last_ban_end = t
        return out

    def idle(self, t: float, policy: TenantPolicy | None) -> bool:
        """Nothing left worth keeping at ``t``: no ban, no recent violations, escalation forgotten."""
        if self.ban_end is not None:
            return False
        period = policy.violation_period_s if policy else 0.0
        forget = policy.ban_forget_s if policy else 0.0
        if self.violations and self.violations[-1] > t - period:
            return False
        return self.last_ban_end is None or t - self.last_ban_end >= forget


def ban_duration(level: int, policy: TenantPolicy) -> float:
    """Length of an automatic ban at escalation ``level``: base doubled per level, capped.

    >>> p = TenantPolicy(tenant_id="t", ban_base_s=60, ban_max_s=300)
    >>> [ban_duration(n, p) for n in range(5)]
    [60.0, 120.0, 240.0, 300.0, 300.0]
    """
    if level >= 60:
        return policy.ban_max_s
    return min(policy.ban_base_s * (1 << level), policy.ban_max_s)


class BanTimers:
    """A heap of (due, key, kind, token) timers; stale entries are skipped by the caller's check."""

    __slots__ = ("heap",)

    def __init__(self) -> None:
        self.heap: list[tuple[float, str, int, float]] = []

    def __len__(self) -> int:
        return len(self.heap)

    def __getstate__(self) -> object:
        return self.heap

    def __setstate__(self, heap: list[tuple[float, str, int, float]]) -> None:
        self.heap = heap

    def push(self, due: float, key: str, kind: int, token: float = 0.0) -> None:
        """Fire ``kind`` for ``key`` once time reaches ``due``; ``token`` tells stale entries apart."""
        heapq.heappush(self.heap, (due, key, kind, token))

    def pop_due(self, now: float) -> list[tuple[float, str, int, float]]:
        """All timers with ``due <= now``, earliest first."""
        h = self.heap
        out = []
        while h and h[0][0] <= now:
            out.append(heapq.heappop(h))
        return out

    def next_due(self) -> float | None:
        """When the next timer fires, for wiring that wants to sleep until then."""
        return self.heap[0][0] if self.heap else None
