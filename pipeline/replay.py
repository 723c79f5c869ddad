"""Replay protection for signed admin commands: a freshness window and nonce memory.

Pure: the caller passes the current (wall) time in. Commands are signed by an operator now,
so freshness is judged against the wall clock, not event time; their effects use event time.
"""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["ReplayGuard"]


class ReplayGuard:
    """Accepts a (nonce, ts) once, and only while ts is within `max_skew_s` of now."""

    def __init__(self, max_skew_s: float, seen: MutableMapping[str, float] | None = None):
        self.max_skew_s = max_skew_s
        self.seen: MutableMapping[str, float] = seen if seen is not None else {}

    def check(self, nonce: str, ts: float, now: float) -> str | None:
        """None when the command may run (and its nonce is then remembered), else the reason."""
        if ts < now - self.max_skew_s:
            return f"stale command: signed {now - ts:.0f}s ago (limit {self.max_skew_s:.0f}s)"
        if ts > now + self.max_skew_s:
            return f"command from the future: {ts - now:.0f}s ahead (limit {self.max_skew_s:.0f}s)"
        if nonce in self.seen:
            return "replayed nonce"
        self.seen[nonce] = ts
        return None

    def prune(self, now: float) -> list[str]:
        """Forget nonces too old to pass the freshness check anyway; return them."""
        old = [n for n, ts in self.seen.items() if ts < now - self.max_skew_s]
        for n in old:
            del self.seen[n]
        return old
