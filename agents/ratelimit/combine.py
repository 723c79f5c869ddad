"""Second stage of the rollups: a tenant-minute's parts from every requests partition, added
up into ONE complete rollup, closed by the watermark of all source partitions (pure: no clock,
no I/O).

Requests are keyed ``tenant:ip``, so a tenant-minute is seen by several partitions of
``requests``; each one's rate limiter closes its share (a *part*) on its own watermark. One
partition's clock says nothing about the others, so the combiner closes a minute only when
every source partition has said it is past it (watermark propagation, as Flink does it):

- Each source ``s`` sends, to every combiner, :class:`~schemas.ratelimit.RollupParts`
  envelopes: the parts it closed for that combiner's tenants, then ``watermark`` ``w_s``
  (no more parts of a minute before ``w_s`` will come from ``s``). Per source the envelopes
  arrive in the order sent (one Kafka partition, one producer).
- Minutes before ``W = min(w_s)`` over the sources that are not idle close, in (minute,
  tenant) order. A source never heard from holds everything back, unless it said it is idle.
- *Idle*: a source with nothing left to read (caught up with its partition, no new record for
  a while: the rate-limit agent's rule) flushes every open minute and sends ``idle`` with its
  final watermark and the offset it had read up to; it is left out of the minimum until it
  sends again, *as long as its partition still ends at that offset*: the caller passes the
  sources whose partition has records past it (``close(backlog=...)``, from the broker's end
  offsets), and those are waited for again, at their last watermark (none: they hold
  everything). So a backlog published to quiet partitions (a bulk import, producers flushing
  after an outage) is not cut short by whichever partition the worker happens to read first.
  If every source is idle, ``W`` is the largest watermark (each has flushed everything).
- A part of a closed minute whose source had already announced a watermark past it is a
  redelivery (at-least-once, after a restart): ignored, counted in ``duplicates``; so is a
  second part of an open minute from the same source. Any other part of a closed minute is
  *late* (its source was idle, then woke with older data): published on its own as a
  ``late`` rollup, counted in ``late_parts`` / ``late_requests``, never added to the closed one.
  So is a part its source flagged ``late`` (events older than the source's own watermark).

What closes, and with what, depends only on the envelopes and their order per source: any
interleaving of the sources or batching gives the same complete rollups (tested with
Hypothesis), as long as no source goes idle and later receives older data that was not yet
written when the combiner looked at its partition's end.

Durability (as :class:`~agents.ratelimit.rollup.MinuteRollups`): ``take_changes()`` gives the
table writes since the last call, keys prefixed by the combiner's partition: open minutes
(``"2|acme|29400000"``) and the source marks (``"2|~sources"``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agents.ratelimit.rollup import MinuteCounts
from pipeline.sdk import partition_for
from schemas.ratelimit import Rollup, RollupParts, from_epoch
from schemas.results import stable_id

__all__ = ["PER_RECORD", "RollupCombiner", "envelopes"]

_MARKS = "~sources"
PER_RECORD = 256  # rollups per Kafka record (~1-2 kB each with their histogram): well under 1 MB


def envelopes(source: int, parts: Sequence[Rollup], watermark: float | None, partitions: int, *,
              everyone: bool, idle: bool = False, offset: int | None = None) -> list[tuple[int, RollupParts]]:
    """Stage 1's (target partition, envelope) list for one batch of `source`, in sending order.

    Each part goes to the partition its tenant key maps to; the watermark goes with the last
    envelope of each target (after every part before it), to every target if `everyone` (it
    moved, or the source goes idle or wakes), else only to targets that get parts. `offset`:
    with `idle`, the offset of the last record of its partition the source had read.
    """
    by_target: dict[int, list[Rollup]] = {}
    for r in parts:
        by_target.setdefault(partition_for(r.tenant_id, partitions), []).append(r)
    out: list[tuple[int, RollupParts]] = []
    for q in range(partitions) if everyone else sorted(by_target):
        mine = by_target.get(q, [])
        chunks = [mine[i:i + PER_RECORD] for i in range(0, len(mine), PER_RECORD)] or [[]]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            out.append((q, RollupParts(source=source, watermark=watermark if last else None, idle=idle and last,
                                       offset=offset if idle and last else None, parts=chunk)))
    return out


@dataclass(slots=True)
class _Sum(MinuteCounts):
    """The parts of one tenant-minute added so far, and which sources they came from."""

    distinct_ips: int = 0
    latency_count: int = 0
    sources: list[int] = field(default_factory=list)

    def add(self, r: Rollup, source: int) -> None:
        self.requests += r.requests
        self.errors += r.errors
        self.client_errors += r.client_errors
        self.blocked += r.blocked
        self.distinct_ips += r.distinct_ips
        self.latency_sum += r.latency_sum_ms
        self.latency_count += r.latency_count
        self.latency_max = max(self.latency_max, r.latency_max_ms)
        for b, n in r.latency_hist.items():
            self.hist[b] = self.hist.get(b, 0) + n
        self.sources.append(source)

    def encode(self) -> bytes:
        return json.dumps([self.requests, self.errors, self.client_errors, self.blocked, self.distinct_ips,
                           self.latency_sum, self.latency_count, self.latency_max, sorted(self.hist.items()),
                           sorted(self.sources)], separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Sum:
        r, e, c, b, ips, total, count, top, hist, sources = json.loads(raw)
        return cls(requests=int(r), errors=int(e), client_errors=int(c), blocked=int(b), distinct_ips=int(ips),
                   latency_sum=float(total), latency_count=int(count), latency_max=float(top),
                   hist={int(k): int(v) for k, v in hist}, sources=[int(s) for s in sources])

    def complete(self, tenant: str, minute: datetime, text: str) -> Rollup:
        """The complete rollup of the parts added (`MinuteCounts.rollup`: sums of validated parts)."""
        return self.rollup(id=stable_id("rollup", tenant, text, 0), tenant_id=tenant, minute=minute, part=0,
                           parts=len(self.sources), late=False, distinct_ips=self.distinct_ips,
                           latency_count=self.latency_count)


class RollupCombiner:
    """``add`` envelopes from the sources, ``close()`` for the complete rollups now due.

    ``sources``: the partition count of ``requests`` (every one is waited for).
    ``part``: the partition of ``rollup-parts`` this combiner serves (its table keys' prefix).
    """

    def __init__(self, sources: int, part: int = 0) -> None:
        if sources < 1:
            raise ValueError("at least one source partition")
        self.sources = sources
        self.part = part
        self._open: dict[tuple[str, int], _Sum] = {}
        self._marks: dict[int, float] = {}  # source → its watermark (epoch seconds, a minute boundary)
        self._idle: set[int] = set()
        self._idle_at: dict[int, int] = {}  # idle source → the offset it had read when it said so
        self._closed_before: int | None = None  # minutes below this index are closed
        self.counts = {"parts": 0, "closed": 0, "late_parts": 0, "late_requests": 0, "duplicates": 0}
        self._dirty: set[tuple[str, int]] = set()
        self._gone: list[tuple[str, int]] = []
        self._marks_dirty = False
        self._counts_written = dict(self.counts)

    # -- input --------------------------------------------------------------------------------
    def add(self, envelope: RollupParts) -> list[Rollup]:
        """Take one envelope in; returns the late rows it carried (to publish as they are)."""
        s = envelope.source
        passed = self._marks.get(s)
        late: list[Rollup] = []
        for r in envelope.parts:
            self.counts["parts"] += 1
            if r.late:  # late at its source already: a row of its own, as it is
                self.counts["late_parts"] += 1
                self.counts["late_requests"] += r.requests
                late.append(r)
                continue
            minute = int(r.minute.timestamp() // 60)
            if self._closed_before is not None and minute < self._closed_before:
                if passed is not None and minute * 60.0 < passed:
                    self.counts["duplicates"] += 1
                else:
                    self.counts["late_parts"] += 1
                    self.counts["late_requests"] += r.requests
                    late.append(Rollup.create(**r.model_dump(exclude={"id", "late", "part", "parts"}),
                                              part=s, late=True))
                continue
            key = (r.tenant_id, minute)
            m = self._open.get(key)
            if m is None:
                m = self._open[key] = _Sum()
            elif s in m.sources:
                self.counts["duplicates"] += 1
                continue
            m.add(r, s)
            self._dirty.add(key)
        if envelope.watermark is not None and (passed is None or envelope.watermark > passed):
            self._marks[s] = envelope.watermark
            self._marks_dirty = True
        was = (s in self._idle, self._idle_at.get(s))
        if envelope.idle:
            self._idle.add(s)
            if envelope.offset is None:
                self._idle_at.pop(s, None)
            else:
                self._idle_at[s] = envelope.offset
        else:  # awake: waited for again (a source without a watermark yet holds everything)
            self._idle.discard(s)
            self._idle_at.pop(s, None)
        self._marks_dirty |= was != (s in self._idle, self._idle_at.get(s))
        return late

    def idle_offsets(self) -> dict[int, int | None]:
        """The idle sources and the offset each had read when it said so (None: not given)."""
        return {s: self._idle_at.get(s) for s in sorted(self._idle)}

    # -- closing ------------------------------------------------------------------------------
    def watermark(self, backlog: Collection[int] = ()) -> float | None:
        """Event time every minute before which can close (None: some source holds everything).

        `backlog`: idle sources whose partition has records past the offset they had read:
        waited for again."""
        waited = set(range(self.sources)) | set(self._marks)
        active = waited - (self._idle - set(backlog))
        if not active:
            return max(self._marks.values(), default=None)
        if any(s not in self._marks for s in active):
            return None
        return min(self._marks[s] for s in active)

    def close(self, backlog: Collection[int] = ()) -> list[Rollup]:
        """Complete rollups of every open minute before the watermark, by (minute, tenant);
        `backlog` as for `watermark`."""
        w = self.watermark(backlog)
        if w is None:
            return []
        upto = int(w // 60)
        if self._closed_before is not None and upto <= self._closed_before:
            return []
        self._closed_before = upto
        self._marks_dirty = True
        due = sorted((k for k in self._open if k[1] < upto), key=lambda k: (k[1], k[0]))
        out: list[Rollup] = []
        minutes: dict[int, tuple[datetime, str]] = {}
        for key in due:
            m = self._open.pop(key)
            self._gone.append(key)
            at = minutes.get(key[1])
            if at is None:
                start = from_epoch(key[1] * 60.0)
                at = minutes[key[1]] = (start, str(start))
            out.append(m.complete(key[0], at[0], at[1]))
        self.counts["closed"] += len(out)
        return out

    @property
    def open_minutes(self) -> int:
        return len(self._open)

    # -- durable state ------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every table key of this combiner starts with this."""
        return f"{self.part}|"

    def restore(self, key: str, raw: bytes) -> None:
        """Adopt one entry of the table (an open minute or the source marks)."""
        part, _, rest = key.partition("|")
        if int(part) != self.part:
            raise ValueError(f"table key {key!r} is not of combiner {self.part}")
        if rest == _MARKS:
            state = json.loads(raw)
            self._marks = {int(k): float(v) for k, v in state["marks"].items()}
            self._idle = {int(s) for s in state["idle"]}
            self._idle_at = {int(k): int(v) for k, v in state.get("idle_at", {}).items()}
            self._closed_before = None if state["closed_before"] is None else int(state["closed_before"])
            self.counts.update({k: int(v) for k, v in state["counts"].items() if k in self.counts})
            self._counts_written = dict(self.counts)
            return
        tenant, minute = rest.rsplit("|", 1)
        self._open[(tenant, int(minute))] = _Sum.decode(raw)

    def take_changes(self) -> list[tuple[str, bytes | None]]:
        """(key, bytes) of what changed and (key, None) of what closed since the last call."""
        out: list[tuple[str, bytes | None]] = [(f"{self.part}|{t}|{m}", None) for t, m in self._gone
                                               if (t, m) not in self._open]
        for k in self._dirty:
            m = self._open.get(k)
            if m is not None:
                out.append((f"{self.part}|{k[0]}|{k[1]}", m.encode()))
        if self._marks_dirty or self.counts != self._counts_written:
            self._counts_written = dict(self.counts)
            state = {"marks": {str(k): v for k, v in sorted(self._marks.items())}, "idle": sorted(self._idle),
                     "idle_at": {str(k): v for k, v in sorted(self._idle_at.items())},
                     "closed_before": self._closed_before, "counts": self.counts}
            out.append((f"{self.part}|{_MARKS}", json.dumps(state, separators=(",", ":")).encode()))
        self._dirty.clear()
        self._gone.clear()
        self._marks_dirty = False
        return out
