"""Alert-storm control: per recipient at most `limit` alert mails per window; the rest fold
into one digest when the window closes. Critical alerts always go out at once (and count).

Pure and in event time: `now` is passed in (float epoch seconds). Windows are fixed and
start with the first alert a recipient gets after the previous window closed:

    t:  0    5    10   …  3600
        A1   A2   A3 … A5 | A6..A40 folded | window closes → digest(A6..A40) at 3600
        (limit = 5)          C (critical) → sent at once even when over the limit

State is a small picklable dict of buckets, one per recipient with an open window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.notify import Channel, Notification, Severity
from schemas.results import stable_id

__all__ = ["StormDecision", "StormGuard", "StormPolicy"]

_DEFAULT_KINDS = frozenset({"anomaly_alert", "ban_notice"})


@dataclass(frozen=True, slots=True)
class StormPolicy:
    limit: int = 5  # alert mails per recipient per window
    window: float = 3600.0  # seconds
    kinds: frozenset[str] = _DEFAULT_KINDS  # what counts as an alert; other kinds pass untouched
    digest_lines: int = 50  # a digest lists at most this many alerts, and counts them all


@dataclass(slots=True)
class _Bucket:
    start: float
    sent: int = 0
    folded: int = 0
    lines: list[str] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    worst: Severity = Severity.INFO


@dataclass(slots=True)
class StormDecision:
    send: list[Notification] = field(default_factory=list)  # deliver now (digests of closed windows first)
    folded: bool = False  # the offered notification went into a digest


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _line(n: Notification) -> str:
    v = n.variables
    what = " ".join(f"{k}={v[k]}" for k in ("metric", "value", "ip", "reason") if k in v)
    return f"{n.ts:%Y-%m-%d %H:%M} [{n.severity.value}] {n.tenant_id} {n.kind} {what}".strip()


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class StormGuard:
    """Decides, per offered notification, whether it goes now or into the recipient's digest."""

    def __init__(self, policy: StormPolicy | None = None) -> None:
        self.policy = policy or StormPolicy()
        self._buckets: dict[str, _Bucket] = {}

    def offer(self, n: Notification, now: float) -> StormDecision:
        decision = StormDecision(send=self.flush(now))
        if n.kind not in self.policy.kinds or n.channel is not Channel.EMAIL:
            decision.send.append(n)
            return decision
        bucket = self._buckets.setdefault(n.recipient, _Bucket(start=now))
        if n.severity is Severity.CRITICAL or bucket.sent < self.policy.limit:
            bucket.sent += 1
            decision.send.append(n)
            return decision
        bucket.folded += 1
        if len(bucket.lines) < self.policy.digest_lines:
            bucket.lines.append(_line(n))
        if n.tenant_id not in bucket.tenants:
            bucket.tenants.append(n.tenant_id)
        if _RANK[n.severity] > _RANK[bucket.worst]:
            bucket.worst = n.severity
        decision.folded = True
        return decision

    def flush(self, now: float) -> list[Notification]:
        """Close every window that ended at or before `now`; a digest for each that folded mail."""
        out = []
        for recipient in sorted(self._buckets):
            bucket = self._buckets[recipient]
            end = bucket.start + self.policy.window
            if end > now:
                continue
            del self._buckets[recipient]
            if bucket.folded:
                out.append(self._digest(recipient, bucket, end))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The open windows as JSON-ready data (the agent keeps them in a Faust table)."""
        return {recipient: asdict(b) for recipient, b in self._buckets.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], policy: StormPolicy | None = None) -> StormGuard:
        guard = cls(policy)
        guard._buckets = {r: _Bucket(**{**b, "worst": Severity(b["worst"])}) for r, b in data.items()}
        return guard

    def pending(self) -> int:
        """How many folded alerts wait for a digest."""
        return sum(b.folded for b in self._buckets.values())

    def _digest(self, recipient: str, b: _Bucket, end: float) -> Notification:
        return Notification(
            id=stable_id("digest", recipient, b.start),
            kind="alert_digest",
            recipient=recipient,
            tenant_id=b.tenants[0],
            variables={
                "tenant_id": ", ".join(b.tenants),
                "count": b.folded,
                "folded": len(b.lines),
                "summary": "\n".join(b.lines),
                "window_start": _when(b.start),
                "window_end": _when(end),
            },
            severity=b.worst,
            ts=datetime.fromtimestamp(end, UTC),
        )
