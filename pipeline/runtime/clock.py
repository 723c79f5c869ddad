"""Event time: per-partition watermarks derived from the events themselves.

Logic never reads the wall clock. The watermark of a partition is the newest event time accepted
on it minus the allowed lateness; timers fire when it passes them. With a `LeadRule`
(`pipeline.runtime.event_time`), `admit` decides which events of a batch may move that time: one far
ahead of the rest of its partition is refused instead. An optional idle tick advances time from
the wall clock (the caller passes the wall time in) for quiet partitions.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from pipeline.runtime.event_time import Admission, LeadRule, Witnesses, admit

__all__ = ["EventClock"]


class EventClock:
    """Tracks the newest event time per stream (a partition, or a (topic, partition) pair);
    `now(p)` is that minus the lateness."""

    __slots__ = ("_newest", "_witnesses", "lateness_s", "rule")

    def __init__(self, lateness_s: float = 0.0, rule: LeadRule | None = None) -> None:
        self.lateness_s = lateness_s
        self.rule = rule or LeadRule(max_lead_s=None)  # without a rule every event moves time
        self._newest: dict[Hashable, float] = {}
        self._witnesses: dict[Hashable, Witnesses] = {}

    def observe(self, partition: Hashable, ts: float) -> None:
        if ts > self._newest.get(partition, float("-inf")):
            self._newest[partition] = ts

    def newest(self, partition: Hashable) -> float | None:
        """The newest event time seen on `partition` (what a checkpoint records), or None."""
        return self._newest.get(partition)

    def clears(self, partition: Hashable, newest_ts: float, wall_now: float | None = None) -> bool:
        """True when a batch whose newest event time is `newest_ts` passes the rule whole, so the
        caller may `observe` it (and `note` its tenants) without `admit`: the partition has a
        time and the batch stays within the lead (and the wall clock's skew)."""
        rule = self.rule
        newest = self._newest.get(partition)
        if newest is None:
            return not rule.active
        if rule.max_lead_s is not None and newest_ts > newest + rule.max_lead_s:
            return False
        return rule.max_clock_skew_s is None or wall_now is None or newest_ts <= wall_now + rule.max_clock_skew_s

    def note(self, partition: Hashable, tenants: Iterable[str]) -> None:
        """Remember the tenants of a batch taken whole (`clears`): how many a partition has seen
        decides whether tenants or events vouch for a jump. Reads only until the quorum is known."""
        memo = self._witnesses.get(partition)
        if memo is not None and not memo.knows_quorum(self.rule.quorum):
            memo.note(tenants, self.rule.quorum)

    def admit(self, partition: Hashable, times: Sequence[float], tenants: Sequence[str],
              wall_now: float | None = None) -> Admission:
        """Which of a batch's events (`times[i]` of tenant `tenants[i]`, arrival order) may move
        `partition`'s time (see `pipeline.runtime.event_time`); observes those."""
        memo = self._witnesses.get(partition)
        if memo is None:
            memo = self._witnesses[partition] = Witnesses()
        verdict = admit(self.rule, memo, self._newest.get(partition), times, tenants, wall_now=wall_now,
                        peers=self._peers(partition))
        if verdict.newest is not None:
            self.observe(partition, verdict.newest)
        return verdict

    def _peers(self, partition: Hashable) -> float | None:
        """The (lower) median newest event time of the other partitions under the rule, if any."""
        times = sorted(self._newest[p] for p in self._witnesses if p != partition and p in self._newest)
        return times[(len(times) - 1) // 2] if times else None

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
