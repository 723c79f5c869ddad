"""The decisions cache: the current decision of every (tenant, ip), answered from memory.

Fed with the records of the pipeline's ``decisions`` topic (one JSON ``Decision`` per Kafka
record, keyed ``tenant:ip``, compacted: the last record of a key is its decision in force)
and of ``ratelimit-policies`` (one ``TenantPolicy`` per tenant, for the ``RateLimit-Policy``
header). Only refused keys are kept: an "allowed" decision removes its key, so memory grows
with the keys being throttled, banned or blocked, not with every client.

A used-up quota. The rate limiter announces the request that uses up a window's quota: an
"allowed" decision with ``remaining`` 0, ``reset_ts`` (when the window has room for one more)
and reason ``exhausted:<window>``. The cache keeps it as a throttle ending at ``reset_ts``: the
next request would cross the limit, so it is refused here instead of being served and throttled
only after the pipeline saw it. So exactly the allowed count passes whenever the announcement
reaches the edge before the IP's next request.

Event time. Throttles and bans end in *event time*, as they do in the pipeline, where each
partition of ``requests`` has its own watermark. The cache never reads a clock: a partition's
``now`` is the newest decision time applied from that partition of ``decisions`` (decisions
are stamped with the event time the pipeline made them at; both topics have the same partition
count and key, so a key's decisions partition is its requests partition). A throttle or ban
whose ``reset_ts`` (the end the pipeline announced) is at or before its partition's ``now``
answers "allowed"; otherwise it holds until the pipeline's own "allowed" decision for the key
arrives (published when that partition's watermark passes the end). So the edge never lifts a
refusal before the pipeline's clock has passed its end, and never keeps one after the
pipeline said it ended.

Malformed records are counted in ``rejected`` and skipped; nothing in them is executed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = ["ALLOWED", "BANNED", "BLOCKED", "STATES", "THROTTLED", "DecisionCache", "Verdict", "policy_header"]

ALLOWED: Final = 0
THROTTLED: Final = 1
BANNED: Final = 2
BLOCKED: Final = 3
STATES: Final = ("allowed", "throttled", "banned", "blocked")
_STATE_OF: Final = {name: i for i, name in enumerate(STATES)}
WINDOWS: Final = {"minute": 60, "hour": 3600, "day": 86400}
_NEVER: Final = float("-inf")
_MAX_TEXT = 256  # tenant ids, IPs and reasons are far shorter in a valid record


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the edge answers for one request: the decision and what the headers say."""

    state: int = ALLOWED
    reason: str = "ok"
    limit: int | None = None  # quota of the binding window (refused) or None
    window: str = ""  # the binding window's name ("minute", "hour", "day"), "ban", or ""
    reset_s: float | None = None  # seconds until the refusal ends, in event time (None: not known)
    shadow: bool = False  # the tenant is in shadow mode: say what would happen, enforce nothing
    policy: str = ""  # RateLimit-Policy field value for the tenant ("" unknown)

    @property
    def name(self) -> str:
        return STATES[self.state]

    @property
    def refused(self) -> bool:
        """The pipeline refuses this key now (enforced or, for a shadow tenant, would be)."""
        return self.state != ALLOWED

    @property
    def enforced(self) -> bool:
        """The request must be refused here."""
        return self.state != ALLOWED and not self.shadow


ALLOW: Final = Verdict()


def policy_header(per_minute: int | None, per_hour: int | None, per_day: int | None) -> str:
    """``RateLimit-Policy`` of a tenant's limits: one named policy per limited window."""
    parts = [f'"{name}";q={q};w={WINDOWS[name]}'
             for name, q in (("minute", per_minute), ("hour", per_hour), ("day", per_day)) if q is not None]
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class _Entry:
    state: int
    reason: str
    limit: int | None
    window: str
    reset_ts: float | None
    shadow: bool
    partition: int


def _epoch(text: Any) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("timestamp is not RFC 3339 text")
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("timestamp without a UTC offset")
    return t.timestamp()


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT:
        raise ValueError(f"{what} is not a short string")
    return value


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is not a count")
    return value


class DecisionCache:
    """Current decisions by (tenant, ip) and RateLimit-Policy by tenant; see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._allowed: dict[str, Verdict] = {}  # tenant → its "allowed" verdict (with its policy header)
        self.clocks: dict[int, float] = {}  # partition → event time: the newest decision time applied
        self.applied = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- the hot path ---------------------------------------------------------------------
    def lookup(self, tenant: str, ip: str) -> Verdict:
        """The verdict for a request of ``ip`` (canonical text) to ``tenant``, now in event time."""
        e = self._entries.get((tenant, ip))
        if e is None:
            return self._allowed.get(tenant, ALLOW)
        policy = self._allowed.get(tenant, ALLOW).policy
        if e.reset_ts is None:  # blocked, or a refusal whose end was not announced
            return Verdict(e.state, e.reason, e.limit, e.window, None, e.shadow, policy)
        left = e.reset_ts - self.clocks.get(e.partition, _NEVER)
        if left <= 0:  # ended in event time; the pipeline's "allowed" is on its way
            return self._allowed.get(tenant, ALLOW)
        return Verdict(e.state, e.reason, e.limit, e.window, left, e.shadow, policy)

    # -- feeding ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The newest decision time applied from any partition (-inf before the first)."""
        return max(self.clocks.values(), default=_NEVER)

    def apply_decision(self, key: bytes | None, value: bytes | None, partition: int = 0) -> bool:
        """Apply one record of ``decisions`` (from ``partition``); False (and counted) if it is not one."""
        try:
            if value is None:  # a tombstone: the key has no decision any more
                tenant, _, ip = (key or b"").decode().partition(":")
                self._entries.pop((tenant, ip), None)
                self.applied += 1
                return True
            d = json.loads(value)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            tenant, ip = _text(d.get("tenant_id"), "tenant_id"), _text(d.get("ip"), "ip")
            state = _STATE_OF[str(d.get("state"))]
            reason = _text(d.get("reason"), "reason")
            ts = _epoch(d.get("ts"))
            reset = d.get("reset_ts")
            reset_ts = None if reset is None else _epoch(reset)
            limit = _count(d.get("limit"), "limit")
            remaining = _count(d.get("remaining"), "remaining")
            shadow = d.get("shadow", False)
            if not isinstance(shadow, bool):
                raise ValueError("shadow is not a boolean")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            self.rejected += 1
            return False
        if ts > self.clocks.get(partition, _NEVER):
            self.clocks[partition] = ts
        if state == ALLOWED and remaining == 0 and reset_ts is not None:  # quota used up: refuse the next
            state = THROTTLED
        if state == ALLOWED:
            self._entries.pop((tenant, ip), None)
        else:
            # Only names the edge knows reach a header: a record is input, not header text.
            name = reason.removeprefix("limit:").removeprefix("exhausted:")
            window = name if name in WINDOWS else ("ban" if state == BANNED else "")
            self._entries[(tenant, ip)] = _Entry(state, reason, limit, window, reset_ts, shadow, partition)
        self.applied += 1
        return True

    def apply_policy(self, key: bytes | None, value: bytes | None, partition: int = 0) -> bool:
        """Apply one record of ``ratelimit-policies`` (a tenant's limits); False if malformed."""
        try:
            tenant = (key or b"").decode()
            if value is None:
                self._allowed.pop(tenant, None)
                return True
            p = json.loads(value)
            if not isinstance(p, dict):
                raise ValueError("not a JSON object")
            tenant = _text(p.get("tenant_id", tenant), "tenant_id")
            limits = [_count(p.get(f"per_{w}"), w) for w in WINDOWS]
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            self.rejected += 1
            return False
        enabled = p.get("enabled", True) is not False
        header = policy_header(*limits) if enabled else ""
        self._allowed[tenant] = Verdict(policy=header, shadow=p.get("shadow") is True)
        return True
