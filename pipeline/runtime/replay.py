"""Replay protection for signed admin commands: routing, a freshness window and nonce memory.

Pure: the caller passes the current (wall) time in. Commands are signed by an operator now,
so freshness is judged against the wall clock, not event time; their effects use event time.

A command applies at most once however many workers run because its routing is bound to what
is signed: the signed `tenant_id` is the only Kafka key it may travel under, and that key's
partition (Kafka's default partitioner) the only partition (`misrouted`). The nonce memory of
a partition is a changelogged table partition, owned by one worker at a time and recovered by
the next, so every copy of a command, however it was re-sent, meets the same memory.
"""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["ReplayGuard", "misrouted"]


def misrouted(tenant: str, key: bytes | None, partition: int, home: int) -> str | None:
    """Why a command for `tenant` may not run from (`key`, `partition`), or None when it may.

    `home` is the partition Kafka's default partitioner gives the key `tenant`.
    """
    expected = tenant.encode()
    if key != expected or partition != home:
        shown = key.decode(errors="replace")[:80] if key is not None else None
        return (f"misrouted command: key {shown!r} on partition {partition}; a command for tenant "
                f"{tenant!r} is valid only under its own key, on partition {home}")
    return None


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
        old = [n for n, ts in self.seen.items()
               if not isinstance(ts, int | float) or ts < now - self.max_skew_s]  # or not a time we wrote
        for n in old:
            del self.seen[n]
        return old
