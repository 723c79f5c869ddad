"""Which events may move a partition's time (pure: no clock reads, no I/O).

A partition's time is the newest event time accepted on it (`pipeline.runtime.clock.EventClock`); timers
fire and windows close when it passes them. Without a rule one event dated 2099 (a hostile
producer, a bit flip) would become the partition's time for every tenant on it. The rule, for
one batch of a partition's events (taken in time order, so arrival order does not matter):

- **Lead.** An event more than `max_lead_s` ahead of the partition's newest accepted event is
  *ahead*: refused, with the reason, unless other events vouch for its time. A jump beyond the
  lead needs `quorum` distinct tenants with events that far ahead and within the lead of each
  other (in the batch, or refused recently). A partition that has seen fewer than `quorum`
  tenants counts events instead: a lone tenant's partition jumps once two of its events agree,
  and a lone bit-flipped one stays refused. So one tenant alone never moves another tenant's
  time more than the lead at once.
- **Peers.** The time the worker's other partitions agree on (their median newest event time)
  counts as a witness too: a quiet partition whose lone tenant speaks again after a gap is in
  step with the rest of the worker and is accepted, while a 2099 event is ahead of everyone.
- **Wall clock** (live deployments: `max_clock_skew_s` set and the wall time passed in). An event
  more than that ahead of the wall clock is refused, whatever vouches for it; up to the wall
  clock, it vouches like a peer (a live partition's first events after a quiet night are
  accepted). Replays leave it off.
- **Start.** A partition's first batch is judged against its peers. Without peers (the
  worker's first partition) it starts at the time its own events vouch for (the same quorum
  over the batch), so one odd event among honest ones is refused from the first batch on; a
  first batch of one lone event starts there (live: the wall clock bounds it).
- Late events (older than the partition's time) are accepted: what they miss is each capability's
  concern (a closed rollup minute counts them late), never a silent drop here.

The caller dead-letters refused events with the reason and the original (they can be published
again once their time is right), and advances time with the accepted ones only.

>>> rule = LeadRule(max_lead_s=3600, quorum=2)
>>> memo = Witnesses()
>>> a = admit(rule, memo, None, [1000.0, 1010.0, 4.1e9], ["acme", "beta", "evil"])
>>> a.accepted, a.newest, a.refused[0].index
([0, 1], 1010.0, 2)
>>> admit(rule, memo, a.newest, [1020.0 + 86400, 1030.0 + 86400], ["acme", "beta"]).accepted  # a gap
[0, 1]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["Admission", "LeadRule", "Refusal", "Witnesses", "admit"]


@dataclass(frozen=True, slots=True)
class LeadRule:
    """How far ahead an event may be. `max_lead_s=None` and `max_clock_skew_s=None`: no limit."""

    max_lead_s: float | None = 21_600.0
    quorum: int = 2  # tenants (or events, on a partition with fewer tenants) that must agree on a jump
    max_clock_skew_s: float | None = None  # live only: how far ahead of the wall clock
    memory: int = 256  # refused events remembered per partition as witnesses of a later jump

    @property
    def active(self) -> bool:
        return self.max_lead_s is not None or self.max_clock_skew_s is not None


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # position in the batch
    reason: str


@dataclass(slots=True)
class Admission:
    accepted: list[int]  # positions in the batch, in order
    refused: list[Refusal]
    newest: float | None  # the partition's newest accepted event time after the batch


@dataclass(slots=True)
class Witnesses:
    """What one partition remembers between batches: the first tenants it saw (up to the quorum:
    whether tenants or events vouch) and its recently refused ahead events."""

    tenants: set[str] = field(default_factory=set)
    ahead: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=256))

    def knows_quorum(self, quorum: int) -> bool:
        return len(self.tenants) >= quorum

    def note(self, tenants: Iterable[str], quorum: int) -> None:
        for t in tenants:
            if len(self.tenants) >= quorum:
                return
            self.tenants.add(t)


def admit(
    rule: LeadRule,
    memo: Witnesses,
    newest: float | None,
    times: Sequence[float],
    tenants: Sequence[str],
    *,
    wall_now: float | None = None,
    peers: float | None = None,
) -> Admission:
    """Decide one batch (`times[i]` of tenant `tenants[i]`, arrival order) of a partition whose
    newest accepted event time is `newest` (None: its first batch). `peers`: the time the
    worker's other partitions agree on (their median), a witness like an agreeing tenant.
    Updates `memo`."""
    lead = math.inf if rule.max_lead_s is None else rule.max_lead_s
    cap = math.inf if rule.max_clock_skew_s is None or wall_now is None else wall_now + rule.max_clock_skew_s
    if memo.ahead.maxlen != rule.memory:
        memo.ahead = deque(memo.ahead, maxlen=rule.memory)
    memo.note(tenants, rule.quorum)
    by_tenant = memo.knows_quorum(rule.quorum)
    floor = -math.inf if newest is None else newest + lead
    pool = [*memo.ahead, *((t, k) for t, k in zip(times, tenants, strict=True) if floor < t <= cap)]
    # A first batch with no other partition to compare with vouches for itself.
    alone = newest is None and peers is None
    need = min(rule.quorum, _witnesses(pool, by_tenant)) if alone else rule.quorum
    vouched = max(_vouched(pool, need, by_tenant, lead), -math.inf if peers is None else peers)
    if cap < math.inf:  # live: the wall clock is a witness too (a morning after a quiet night)
        assert wall_now is not None
        vouched = max(vouched, wall_now)
    top = -math.inf if newest is None else newest
    accepted: list[int] = []
    refused: list[Refusal] = []
    # In time order, so arrival order within a batch does not matter: an event is taken when it is
    # within the lead of the newest one taken so far (or of the vouched time).
    for i in sorted(range(len(times)), key=times.__getitem__):
        t, k = times[i], tenants[i]
        if t > cap:
            assert wall_now is not None  # cap is finite
            refused.append(Refusal(i, f"too far ahead: event time {_iso(t)} is {t - wall_now:.0f} s ahead of "
                                      f"the wall clock (TW_MAX_CLOCK_SKEW_S={cap - wall_now:g})"))
        elif t <= _horizon(max(top, vouched), lead):
            accepted.append(i)
            top = max(top, t)
        else:
            ref = max(top, vouched)
            refused.append(Refusal(i, f"too far ahead: event time {_iso(t)} is {t - ref:.0f} s ahead of this "
                                      f"partition's time {_iso(ref)} (TW_MAX_EVENT_LEAD_S={lead:g}) and fewer "
                                      f"than {rule.quorum} {'tenants' if by_tenant else 'events'} agree on it"))
            memo.ahead.append((t, k))
    accepted.sort()
    refused.sort(key=lambda r: r.index)
    horizon = _horizon(max(top, vouched), lead)
    if memo.ahead and min(t for t, _ in memo.ahead) <= horizon:  # no longer ahead: no witness of a jump
        memo.ahead = deque(((t, k) for t, k in memo.ahead if t > horizon), maxlen=rule.memory)
    return Admission(accepted, refused, None if top == -math.inf else top)


def _horizon(base: float, lead: float) -> float:
    """The newest time acceptable after `base` (-inf before any reference; never NaN)."""
    return -math.inf if base == -math.inf else base + lead


def _witnesses(pool: Sequence[tuple[float, str]], by_tenant: bool) -> int:
    return len({k for _, k in pool}) if by_tenant else len(pool)


def _vouched(pool: Sequence[tuple[float, str]], need: int, by_tenant: bool, span: float) -> float:
    """The newest time `t` that `need` witnesses agree on: distinct tenants (or events) with
    times within [t, t + span]; -inf when none. Two unrelated far events (a 2099 one, a bit flip
    to 2066) do not agree."""
    if need < 1 or not pool:
        return -math.inf
    points = sorted(pool, reverse=True)
    inside: dict[str, int] = {}  # tenant -> its events in the window [points[i], points[i] + span]
    top = 0
    for i, (t, k) in enumerate(points):
        inside[k] = inside.get(k, 0) + 1
        while points[top][0] > t + span:
            gone = points[top][1]
            inside[gone] -= 1
            if not inside[gone]:
                del inside[gone]
            top += 1
        if (len(inside) if by_tenant else i - top + 1) >= need:
            return t
    return -math.inf


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return repr(ts)
