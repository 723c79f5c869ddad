"""Per-tenant, per-minute request rollups of one partition, closed by watermark (pure: no clock, no I/O).

Latency percentiles come from a log-spaced histogram (buckets 5 % apart), so p50/p95 are
within 5 % of the exact value while a minute's memory stays bounded by the bucket count.
The histogram travels with the rollup, so parts from several partitions merge exactly.

Durability: the agent keeps the open minutes in a changelogged table, under keys that start
with the part (``"3|acme|29400000"``), so a worker knows which entries are its partition's.
``take_changes()`` gives the minutes changed since the last call (as bytes,
:func:`encode_minute`) and the ones closed since (to delete), plus the closing mark (key
``"3|~closed-before"``), which must survive a restart too: a late event for a minute closed
before a crash must not reopen it (the new part would replace the complete one under the
same id). Late events are counted (``late``) and published as parts of their own, flagged
``late`` (``take_late``), never dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from schemas.ratelimit import Rollup, from_epoch
from schemas.results import stable_id

__all__ = ["MinuteCounts", "MinuteRollups", "decode_minute", "encode_minute", "hist_quantile", "hist_quantiles"]

_MARK = "~closed-before"

_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)


def _bucket(latency_ms: float) -> int:
    return 0 if latency_ms < 0.1 else 1 + int(math.log(latency_ms / 0.1) / _LOG_GROWTH)


def _upper(bucket: int) -> float:
    return 0.1 if bucket == 0 else 0.1 * _GROWTH**bucket


@dataclass(slots=True)
class MinuteCounts:
    """What every rollup of a tenant-minute adds up: counters and the latency histogram."""

    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    blocked: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)

    def rollup(self, *, id: str, tenant_id: str, minute: datetime, part: int, parts: int, late: bool,
               distinct_ips: int, latency_count: int) -> Rollup:
        """These counts as a rollup row (parts and complete rows alike); both quantiles in one pass."""
        p50, p95 = hist_quantiles(self.hist, (0.5, 0.95), self.latency_max)
        return Rollup(
            id=id, tenant_id=tenant_id, minute=minute, part=part, parts=parts, late=late, requests=self.requests,
            errors=self.errors, client_errors=self.client_errors, blocked=self.blocked, distinct_ips=distinct_ips,
            latency_sum_ms=float(self.latency_sum), latency_count=latency_count,
            latency_max_ms=float(self.latency_max), latency_p50_ms=p50, latency_p95_ms=p95, latency_hist=self.hist)


@dataclass(slots=True)
class _Minute(MinuteCounts):
    ips: set[str] = field(default_factory=set)
    fresh: list[str] = field(default_factory=list)  # IPs not yet written to the table
    chunks: int = 0  # IP chunks written to the table
    stored: bool = False  # the table holds this minute (else closing it deletes nothing)


def hist_quantile(hist: dict[int, int], q: float, latency_max: float) -> float:
    """Quantile ``q`` of a latency histogram (within 5 %), never above the largest latency seen."""
    rank = q * sum(hist.values())
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return min(_upper(b), latency_max)
    return latency_max


def hist_quantiles(hist: dict[int, int], qs: tuple[float, ...], latency_max: float) -> list[float]:
    """`hist_quantile` for each of the ascending quantiles `qs`, in one pass over the buckets."""
    total = sum(hist.values())
    out: list[float] = []
    seen, i = 0, 0
    for b in sorted(hist):
        seen += hist[b]
        while i < len(qs) and seen >= qs[i] * total:
            out.append(min(_upper(b), latency_max))
            i += 1
        if i == len(qs):
            return out
    return out + [float(latency_max)] * (len(qs) - i)


def encode_minute(m: _Minute) -> bytes:
    """The open minute's counters as compact JSON (histogram as [bucket, count] pairs).

    Its IPs are kept apart, as chunks of the IPs first seen since the previous write, so a
    batch writes only what it added, not the whole set again.
    """
    return json.dumps([m.requests, m.errors, m.client_errors, m.blocked, m.latency_sum, m.latency_max,
                       sorted(m.hist.items()), m.chunks], separators=(",", ":")).encode()


def decode_minute(raw: bytes, into: _Minute) -> None:
    r, e, c, b, total, top, hist, chunks = json.loads(raw)
    into.requests, into.errors, into.client_errors, into.blocked = int(r), int(e), int(c), int(b)
    into.latency_sum, into.latency_max, into.chunks = float(total), float(top), int(chunks)
    into.hist = {int(k): int(v) for k, v in hist}


class MinuteRollups:
    """``add`` requests, ``close(watermark)`` to get the rollups of every minute that ended.

    >>> r = MinuteRollups()
    >>> r.add("acme", "10.0.0.1", 1_800_000_000.5, status=503, latency_ms=20.0)
    >>> r.add("acme", "10.0.0.2", 1_800_000_010.0, status=200, latency_ms=10.0, blocked=True)
    >>> [(x.requests, x.errors, x.blocked, x.distinct_ips) for x in r.close(1_800_000_060.0)]
    [(2, 1, 1, 2)]
    """

    def __init__(self, part: int = 0) -> None:
        self.part = part
        self._open: dict[tuple[str, int], _Minute] = {}
        self._closed_before: int | None = None  # minutes below this index are closed
        self.late = 0  # events for minutes already closed (counted here, published as late parts)
        self._late: dict[tuple[str, int], _Minute] = {}  # their counts, until `take_late`
        self._late_seq = 0
        self._dirty: set[tuple[str, int]] = set()
        self._gone: list[tuple[tuple[str, int], int]] = []  # (minute, its IP chunks; -1: never stored)
        self._mark_dirty = False

    # -- durable state ------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every table key of this part starts with this."""
        return f"{self.part}|"

    def _key(self, tenant: str, minute: int) -> str:
        return f"{self.part}|{tenant}|{minute}"

    def restore(self, key: str, raw: bytes) -> None:
        """Adopt one entry of the table (an open minute, an IP chunk of one, or the closing mark)."""
        part, _, rest = key.partition("|")
        if int(part) != self.part:
            raise ValueError(f"table key {key!r} is not of part {self.part}")
        if rest == _MARK:  # the index, or [the index, late parts so far]
            mark = json.loads(raw)
            self._closed_before, self._late_seq = (int(mark[0]), int(mark[1])) if isinstance(mark, list) \
                else (int(mark), 0)
            return
        tenant, minute, *chunk = rest.split("|")  # tenant ids have no "|"
        m = self._open.get((tenant, int(minute)))
        if m is None:
            m = self._open[(tenant, int(minute))] = _Minute()
        m.stored = True
        if chunk:
            m.ips.update(json.loads(raw))
        else:
            decode_minute(raw, m)

    def take_changes(self) -> list[tuple[str, bytes | None]]:
        """(key, bytes) of what changed and (key, None) of what closed since the last call."""
        out: list[tuple[str, bytes | None]] = []
        for k, chunks in self._gone:  # only minutes the table holds (most open and close in one batch)
            if chunks >= 0 and k not in self._open:
                key = self._key(*k)
                out.append((key, None))
                out += [(f"{key}|ips|{i}", None) for i in range(chunks)]
        for k in self._dirty:
            m = self._open.get(k)
            if m is None:
                continue
            key = self._key(*k)
            if m.fresh:
                out.append((f"{key}|ips|{m.chunks}", json.dumps(m.fresh, separators=(",", ":")).encode()))
                m.chunks += 1
                m.fresh = []
            out.append((key, encode_minute(m)))
            m.stored = True
        if self._mark_dirty and self._closed_before is not None:
            mark = [self._closed_before, self._late_seq] if self._late_seq else self._closed_before
            out.append((f"{self.part}|{_MARK}", json.dumps(mark).encode()))
        self._dirty.clear()
        self._gone.clear()
        self._mark_dirty = False
        return out

    def add(
        self, tenant: str, ip: str, ts: float, *, status: int, latency_ms: float, blocked: bool = False
    ) -> None:
        """Count one request event (``blocked``: its decision was not "allowed")."""
        minute = int(ts // 60)
        key = (tenant, minute)
        if self._closed_before is not None and minute < self._closed_before:
            self.late += 1
            m = self._late.get(key)
            if m is None:
                m = self._late[key] = _Minute()
        else:
            m = self._open.get(key)
            if m is None:
                m = self._open[key] = _Minute()
            self._dirty.add(key)
        m.requests += 1
        if status >= 500:
            m.errors += 1
        elif status >= 400:
            m.client_errors += 1
        if blocked:
            m.blocked += 1
        m.latency_sum += latency_ms
        m.latency_max = max(m.latency_max, latency_ms)
        b = _bucket(latency_ms)
        m.hist[b] = m.hist.get(b, 0) + 1
        if ip not in m.ips:
            m.ips.add(ip)
            m.fresh.append(ip)

    @property
    def closed_before(self) -> float | None:
        """Event time (a minute boundary) before which every minute of this part is closed."""
        return None if self._closed_before is None else self._closed_before * 60.0

    def flush(self) -> list[Rollup]:
        """Close every open minute (the partition went idle); events older than the last one become late."""
        if not self._open:
            return []
        return self.close((max(m for _, m in self._open) + 1) * 60.0)

    def close(self, watermark: float) -> list[Rollup]:
        """Rollups of all minutes that ended at or before ``watermark``, by (minute, tenant)."""
        upto = int(watermark // 60)  # minutes with index < upto have ended
        if self._closed_before is None or upto > self._closed_before:
            self._closed_before = upto
            self._mark_dirty = True
        due = sorted((k for k in self._open if k[1] < upto), key=lambda k: (k[1], k[0]))
        out = []
        minutes: dict[int, tuple[datetime, str]] = {}  # each minute's time and its text, once per close
        for key in due:
            m = self._open.pop(key)
            self._gone.append((key, m.chunks if m.stored else -1))
            at = minutes.get(key[1])
            if at is None:
                start = from_epoch(key[1] * 60.0)
                at = minutes[key[1]] = (start, str(start))
            # = Rollup.create's id, str() done once
            out.append(self._rollup(m, key[0], at, stable_id("rollup", key[0], at[1], self.part)))
        return out

    def take_late(self) -> list[Rollup]:
        """Parts of the events that came for minutes already closed, flagged ``late`` (never dropped).

        Each gets an id of its own (a sequence number kept with the closing mark), so a second
        late part of the same minute is a row of its own, and a replay gives the same ids.
        """
        out = []
        for (tenant, minute), m in sorted(self._late.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            start = from_epoch(minute * 60.0)
            self._late_seq += 1
            out.append(self._rollup(m, tenant, (start, str(start)),
                                    stable_id("rollup", tenant, str(start), self.part, "late", self._late_seq),
                                    late=True))
        if self._late:
            self._late.clear()
            self._mark_dirty = True
        return out

    def _rollup(self, m: _Minute, tenant: str, at: tuple[datetime, str], rollup_id: str, late: bool = False) -> Rollup:
        return m.rollup(id=rollup_id, tenant_id=tenant, minute=at[0], part=self.part, parts=1, late=late,
                        distinct_ips=len(m.ips), latency_count=m.requests)
