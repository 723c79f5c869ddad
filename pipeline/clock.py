"""Event time: per-partition watermarks derived from the events themselves.

Logic never reads the wall clock. The watermark of a partition is the newest event time seen
on it minus the allowed lateness; timers fire when it passes them. An optional idle tick
advances time from the wall clock (the caller passes the wall time in) for quiet partitions.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["EventClock"]


class EventClock:
    """Tracks the newest event time per stream (a partition, or a (topic, partition) pair);
    `now(p)` is that minus the lateness."""

    __slots__ = ("_newest", "lateness_s")

    def __init__(self, lateness_s: float = 0.0) -> None:
        self.lateness_s = lateness_s
        self._newest: dict[Hashable, float] = {}

    def observe(self, partition: Hashable, ts: float) -> None:
        if ts > self._newest.get(partition, float("-inf")):
            self._newest[partition] = ts

    def newest(self, partition: Hashable) -> float | None:
        """The newest event time seen on `partition` (what a checkpoint records), or None."""
        return self._newest.get(partition)

    def now(self, partition: Hashable) -> float | None:
        """The watermark of `partition`, or None before its first event."""
        newest = self._newest.get(partition)
        return None if newest is None else newest - self.lateness_s

    def low_watermark(self) -> float | None:
        """The slowest partition's watermark: safe for decisions spanning partitions."""
        if not self._newest:
            return None
        return min(self._newest.values()) - self.lateness_s

    def idle_tick(self, wall_now: float, idle_after_s: float) -> list[Hashable]:
        """Advance partitions whose newest event is older than `idle_after_s` of wall time.

        Returns the partitions moved. Only meaningful when producers' clocks track the wall
        clock (live traffic); replays keep it off so they stay deterministic.
        """
        moved = []
        for partition, newest in self._newest.items():
            target = wall_now - idle_after_s
            if newest < target:
                self._newest[partition] = target
                moved.append(partition)
        return moved

    def partitions(self) -> list[Hashable]:
        return list(self._newest)
