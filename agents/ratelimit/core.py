"""The rate limiter: per (tenant, ip) decisions from policy, bans and sliding windows.

Precedence, first match wins:

1. tenant disabled      → allowed (reason ``disabled``), nothing counted
2. blacklist (IP/CIDR)  → blocked (``blacklist``), even if also whitelisted or banned
3. whitelist (IP/CIDR)  → allowed (``whitelist``), nothing counted, never banned
4. active ban           → banned (``ban``); the request still counts in the windows
5. limits               → throttled (``limit:minute|hour|day``) when a window is over, else allowed

Shadow tenants run the same logic and emit the same records flagged ``shadow=True``: they
say what would happen and enforce nothing.

Outputs are *state changes* only: a :class:`~schemas.ratelimit.Decision` when the
(state, binding window) of a key changes (and, still "allowed", when a request uses up a
window's quota: reason ``exhausted:<window>``, ``remaining`` 0, ``reset_ts`` when the window
has room again, so an enforcer can refuse the next request instead of serving one over),
a :class:`~schemas.ratelimit.Violation` when a window goes over its limit (and again at
each further multiple of it, so clients that ignore throttling keep accruing them),
:class:`~schemas.ratelimit.Ban` when a ban starts or ends. Throttles, bans and used-up
quotas end in event time through :meth:`RateLimiter.expire`.

State lives per key ``"tenant:ip"`` in ``store`` (any ``MutableMapping``, e.g. a Faust
table); each value is a :class:`KeyState`, one flat array that pickles on its own. No clock
is read: every method takes ``now`` / ``ts`` as float epoch seconds.

Manual bans and unbans may carry an ``order_id``: the key remembers the last one applied,
so an order replayed after a crash (at a later time) changes nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Final

from agents.ratelimit.bans import BAN_END, THROTTLE_END, W_BAN_END, BanTimers, Offense, order_tag
from agents.ratelimit.policy import BLACK, WHITE, CompiledPolicy
from agents.ratelimit.window import DAY, DUE, FLAGS, HEADER, HOUR, S0, S1, S2, WINDOWS, RunLog, SlidingWindows
from schemas.ratelimit import Ban, Decision, LimitName, TenantPolicy, Violation, from_epoch

__all__ = ["ALLOWED", "BANNED", "BLOCKED", "STATES", "THROTTLED", "Batch", "KeyState", "RateLimiter"]

ALLOWED: Final = 0
THROTTLED: Final = 1
BANNED: Final = 2
BLOCKED: Final = 3
STATES: Final = ("allowed", "throttled", "banned", "blocked")
_NAMES: Final[tuple[LimitName, LimitName, LimitName]] = ("minute", "hour", "day")
_LEVEL_MAX = 255  # violation multiples tracked per window (8 bits each in KeyState.over)


# The flags word of a KeyState: mark + over << 4 + banned << 28 (all exact in a float).
_MARK: Final = 0xF  # last emitted decision: state * 4 + binding window (throttled only)
_EXHAUSTED: Final = 1  # mark 1 + window: "allowed" announced with the window's quota used up
_OVER: Final = 0xFFFFFF << 4  # per window, 8 bits: how many multiples of the limit it is over
_BANNED: Final = 1 << 28  # a ban is in force; its end is the word at _BAN_END
_BANNED_F: Final = float(_BANNED)
_BAN_END: Final = HEADER + W_BAN_END
_NO_WORDS: Final = array("d")


class KeyState(RunLog):
    """Everything kept for one (tenant, ip), in one flat array: run log, last decision, offenses.

    The flags word holds :attr:`mark`, :attr:`over` and whether a ban is in force; the
    owner section of the run log holds the :class:`Offense` as words, only for keys that
    ever misbehaved (most keys: a 7-word header and their runs, nothing else).
    """

    __slots__ = ()

    @property
    def mark(self) -> int:
        """Last emitted decision: ``state * 4 + binding window`` (0: allowed, or none yet), or
        ``1 + window``: allowed, announced with that window's quota used up."""
        return int(self[FLAGS]) & _MARK

    @mark.setter
    def mark(self, value: int) -> None:
        self[FLAGS] = float(int(self[FLAGS]) & ~_MARK | value)

    @property
    def over(self) -> int:
        """Per window (8 bits each): how many multiples of its limit it was last seen over."""
        return (int(self[FLAGS]) & _OVER) >> 4

    @over.setter
    def over(self, value: int) -> None:
        self[FLAGS] = float(int(self[FLAGS]) & ~_OVER | value << 4)

    @property
    def banned(self) -> bool:
        """Whether a ban is in force (until someone ends it at or after its end)."""
        return self[FLAGS] >= _BANNED_F

    @property
    def off(self) -> Offense | None:
        """The key's violations and bans, decoded (a copy: write changes back with :meth:`set_offense`)."""
        words = self.owner_words()
        return Offense.from_words(words) if words else None

    def set_offense(self, off: Offense | None) -> None:
        """Store ``off`` (None: forget the offenses) and the banned flag that follows from it."""
        self.set_owner_words(_NO_WORDS if off is None else off.to_words())
        flags = int(self[FLAGS]) & ~_BANNED
        self[FLAGS] = float(flags | _BANNED if off is not None and off.ban_end is not None else flags)


@dataclass(slots=True)
class Batch:
    """What one call produced: records to publish and keys whose state must be written back."""

    decisions: list[Decision] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    bans: list[Ban] = field(default_factory=list)
    verdicts: list[int] = field(default_factory=list)  # per input event: ALLOWED..BLOCKED
    changed: set[str] = field(default_factory=set)  # write these keys back (table[k] = store[k])
    evicted: list[str] = field(default_factory=list)  # delete these keys from the table


class RateLimiter:
    """Decides per request; see the module docstring for precedence and outputs."""

    def __init__(
        self,
        policies: Iterable[TenantPolicy] = (),
        default: TenantPolicy | None = None,
        store: MutableMapping[str, KeyState] | None = None,
        windows: SlidingWindows | None = None,
    ) -> None:
        self.store: MutableMapping[str, KeyState] = {} if store is None else store
        self.windows = windows or SlidingWindows()
        self.default = default  # template for tenants without a policy; None = not limited
        self.timers = BanTimers()
        self._policies: dict[str, CompiledPolicy] = {}
        self._gc: dict[int, list[str]] = {}  # hour index → keys to check for idleness then
        self._gc_hour: int | None = None
        for p in policies:
            self.set_policy(p)

    # -- policies ---------------------------------------------------------------------
    def set_policy(self, policy: TenantPolicy) -> None:
        """Install or replace a tenant's policy (key states carry over: windows are fixed)."""
        self._policies[policy.tenant_id] = CompiledPolicy(policy)

    def policy(self, tenant: str) -> TenantPolicy | None:
        """The policy in force for ``tenant`` (its own, else the default template)."""
        cp = self._compiled(tenant)
        return cp.policy if cp else None

    def _compiled(self, tenant: str) -> CompiledPolicy | None:
        cp = self._policies.get(tenant)
        if cp is None and self.default is not None:
            cp = self._policies[tenant] = CompiledPolicy(self.default.model_copy(update={"tenant_id": tenant}))
        return cp

    # -- the hot path -----------------------------------------------------------------
    def decide_batch(self, events: Iterable[tuple[str, str, float]]) -> Batch:
        """Decide ``(tenant, ip, ts)`` events in order; write back ``changed`` once per batch."""
        out = Batch()
        decide, verdicts = self.decide, out.verdicts
        for tenant, ip, ts in events:
            verdicts.append(decide(tenant, ip, ts, out))
        return out

    def decide(self, tenant: str, ip: str, ts: float, out: Batch) -> int:  # noqa: PLR0911, PLR0912, PLR0915
        # One function for the whole precedence ladder: calls cost more than branches here.
        """Decide one request at event time ``ts``; records go to ``out``; returns the state."""
        cp = self._policies.get(tenant) or self._compiled(tenant)
        if cp is None:
            return ALLOWED
        key = f"{tenant}:{ip}"
        st = self.store.get(key)
        if not cp.enabled:
            if st is not None and st.mark:
                self._emit(st, key, cp, ts, ALLOWED, 0, "disabled", out)
            return ALLOWED
        if cp.has_lists:
            listed = cp.listed(ip)
            if listed == BLACK:
                if st is None:
                    st = self._new(key, ts)
                if st.mark != BLOCKED * 4:
                    self._emit(st, key, cp, ts, BLOCKED, 0, "blacklist", out)
                return BLOCKED
            if listed == WHITE:
                if st is not None and st.mark:
                    self._emit(st, key, cp, ts, ALLOWED, 0, "whitelist", out)
                return ALLOWED
        out.changed.add(key)
        t = ts
        if st is None:
            st = self._new(key, ts, first_hit=True)
        elif st[S2]:  # SlidingWindows.hit, inlined (the call cost ~5 %); test_core checks they agree
            if t < st[-2]:  # noqa: PLR1730  # cheaper than max()
                t = st[-2]
            w = self.windows
            if t - st[-3] < w.r0:
                st[-2] = t
                st[-1] += 1.0
            else:
                st.extend((t, t, 1.0))
            st[S0] += 1.0
            st[S1] += 1.0
            st[S2] += 1.0
            if t >= st[DUE]:
                w.advance(st, t)
        else:
            t = self.windows.hit(st, ts)
        flags = st[FLAGS]  # 0 for a key with nothing going on: the common case
        if flags >= _BANNED_F:
            end = st[_BAN_END]
            if t < end:
                if int(flags) & _MARK != BANNED * 4:
                    self._emit(st, key, cp, t, BANNED, 0, "ban", out)
                return BANNED
            self._end_ban(st, key, cp, end, out, emit_decision=False)
            flags = st[FLAGS]
        m, h, d = cp.caps
        if st[S0] < m and st[S1] < h and st[S2] < d:  # room left in every window (upper bounds)
            if flags:  # mark or over set (not banned here): clear over, say allowed once
                mark = int(flags) & _MARK
                st[FLAGS] = float(mark)
                if mark:
                    self._emit(st, key, cp, t, ALLOWED, 0, "ok", out)
            return ALLOWED
        return self._over(st, key, cp, t, out)

    def _over(self, st: KeyState, key: str, cp: CompiledPolicy, t: float, out: Batch) -> int:
        # Slow path: some upper bound reached its limit; count precisely, record violations.
        over, binding, reset = 0, -1, t
        full, full_reset = -1, t  # a window whose quota this request used up exactly
        for k, limit in enumerate(cp.limits):
            if limit is None or self.windows.upper(st, k) < limit:
                continue
            n = round(self.windows.count(st, k, t))
            if n < limit:
                continue
            if n == limit:
                r = self.windows.reset_at(st, k, t, limit)
                if r >= full_reset:
                    full, full_reset = k, r
                continue
            level = min(_LEVEL_MAX, (n - 1) // limit if limit else 1)
            over |= level << (8 * k)
            if level > (st.over >> (8 * k)) & 0xFF:
                self._violation(st, key, cp, out, k=k, limit=limit, n=n, t=t)
                if st.banned:
                    st.over = over | (st.over & ~(0xFF << (8 * k)))
                    return BANNED
            r = self.windows.reset_at(st, k, t, limit)
            if r >= reset:
                binding, reset = k, r
        st.over = over
        if binding < 0:
            self._allowed(st, key, cp, t, out, full, full_reset)
            return ALLOWED
        if st.mark != THROTTLED * 4 + binding:
            self._emit(st, key, cp, t, THROTTLED, binding, f"limit:{_NAMES[binding]}", out, reset)
            self.timers.push(reset, key, THROTTLE_END, reset)
        return THROTTLED

    def _allowed(  # noqa: PLR0917  # private, the slow path's state passed on as it is
        self, st: KeyState, key: str, cp: CompiledPolicy, t: float, out: Batch, full: int, reset: float,
    ) -> None:
        # Allowed: announce a window's quota used up (once, lifted by a timer), or the end of a refusal.
        if full >= 0:
            if st.mark != _EXHAUSTED + full:
                self._emit(st, key, cp, t, ALLOWED, full, f"exhausted:{_NAMES[full]}", out, reset)
                self.timers.push(reset, key, THROTTLE_END, reset)
        elif st.mark:
            self._emit(st, key, cp, t, ALLOWED, 0, "ok", out)

    def _violation(
        self, st: KeyState, key: str, cp: CompiledPolicy, out: Batch, *, k: int, limit: int, n: int, t: float
    ) -> None:
        tenant, ip = key.split(":", 1)
        out.violations.append(Violation.create(
            tenant_id=tenant, ip=ip, limit_name=_NAMES[k], limit=limit, count=n, window_s=WINDOWS[k],
            shadow=cp.shadow, ts=from_epoch(t)))
        off = st.off or Offense()
        threshold = off.violate(t, cp.policy)
        st.set_offense(off)
        if threshold:
            self._start_ban(st, key, cp, t, out, manual=False)

    # -- bans ---------------------------------------------------------------------------
    def _start_ban(
        self, st: KeyState, key: str, cp: CompiledPolicy, t: float, out: Batch, *,
        manual: bool, duration_s: float | None = None, order: int = 0,
    ) -> None:
        if st.banned:  # replace an active ban: end it first, on the record
            self._end_ban(st, key, cp, t, out, emit_decision=False)
        off = st.off or Offense()
        end = off.start_ban(t, cp.policy, manual=manual, duration_s=duration_s)
        if order:
            off.order = order
        st.set_offense(off)
        tenant, ip = key.split(":", 1)
        out.bans.append(Ban.create(
            tenant_id=tenant, ip=ip, action="started", reason="manual" if manual else "auto",
            level=off.ban_level, start=from_epoch(t), end=from_epoch(end), shadow=cp.shadow, ts=from_epoch(t)))
        self.timers.push(end, key, BAN_END, t)
        out.changed.add(key)
        self._emit(st, key, cp, t, BANNED, 0, "ban", out, end)

    def _end_ban(
        self, st: KeyState, key: str, cp: CompiledPolicy, t: float, out: Batch, *,
        emit_decision: bool, order: int = 0, forgive: bool = False,
    ) -> None:
        off = st.off
        assert off is not None
        start, end, level, reason = off.end_ban(t)
        if forgive:
            off.violations.clear()
        if order:
            off.order = order
        st.set_offense(off)
        tenant, ip = key.split(":", 1)
        out.bans.append(Ban.create(
            tenant_id=tenant, ip=ip, action="ended", reason=reason, level=level,
            start=from_epoch(start), end=from_epoch(end), shadow=cp.shadow, ts=from_epoch(t)))
        out.changed.add(key)
        if emit_decision and st.mark == BANNED * 4:
            self._emit(st, key, cp, t, ALLOWED, 0, "ban-ended", out)

    def ban(
        self, tenant: str, ip: str, now: float, duration_s: float | None = None, *, order_id: str | None = None
    ) -> Batch:
        """Manually ban ``ip`` from ``now`` (default duration: the tenant's ``ban_max_s``).

        With ``order_id``, idempotent: if it is the last order applied to this key, nothing
        changes and the batch is empty (a replayed order does not restart the ban later).
        """
        out = Batch()
        cp = self._compiled(tenant)
        if cp is None:
            raise LookupError(f"no policy for tenant {tenant!r}")
        key = f"{tenant}:{ip}"
        st = self.store.get(key)
        order = 0 if order_id is None else order_tag(order_id)
        if order and st is not None and (off := st.off) is not None and off.order == order:
            return out
        if st is None:
            st = self._new(key, now)
        self._start_ban(st, key, cp, now, out, manual=True, duration_s=duration_s, order=order)
        return out

    def unban(self, tenant: str, ip: str, now: float, *, order_id: str | None = None) -> Batch:
        """Manually end ``ip``'s ban at ``now``; an empty batch if it was not banned.

        With ``order_id``, idempotent like :meth:`ban`: the last order applied is not applied again.
        """
        out = Batch()
        key = f"{tenant}:{ip}"
        st = self.store.get(key)
        cp = self._compiled(tenant)
        if st is None or cp is None or not st.banned:
            return out
        order = 0 if order_id is None else order_tag(order_id)
        if order and (off := st.off) is not None and off.order == order:
            return out
        self._end_ban(st, key, cp, now, out, emit_decision=True, order=order, forgive=True)
        return out

    # -- event time -------------------------------------------------------------------------
    def expire(self, now: float) -> Batch:
        """Fire what is due by ``now``: bans ending, throttles lifting, idle keys evicted."""
        out = self.expire_timers(now)
        self._evict(now, out)
        return out

    def expire_timers(self, now: float) -> Batch:
        """Fire the bans ending and throttles lifting by ``now`` (no eviction).

        A lift that finds no room yet re-arms itself for when there will be; if that is still
        by ``now`` it fires in this same call, so the outcome does not depend on how many calls
        event time is cut into (batches, watermarks: a restart cuts them elsewhere).
        """
        out = Batch()
        while due_now := self.timers.pop_due(now):
            for due, key, kind, token in due_now:
                st = self.store.get(key)
                cp = self._compiled(key.split(":", 1)[0])
                if st is None or cp is None:
                    continue
                if kind == BAN_END:
                    if st.banned and st[_BAN_END] == due and (off := st.off) is not None and off.ban_start == token:
                        self._end_ban(st, key, cp, due, out, emit_decision=True)
                elif 0 < st.mark < BANNED * 4:  # throttled, or a quota announced used up
                    last = st.last_ts
                    self._lift(st, key, cp, max(due, last if last is not None else due), out)
        return out

    def _lift(self, st: KeyState, key: str, cp: CompiledPolicy, now: float, out: Batch) -> None:
        # A throttle lifts once every limited window has room for one more request.
        late = now
        for k, limit in enumerate(cp.limits):
            if limit is not None and self.windows.count(st, k, now) + 1 > limit + 0.5:
                late = max(late, self.windows.reset_at(st, k, now, limit), now + 1e-3)
        if late > now:
            self.timers.push(late, key, THROTTLE_END, late)
            return
        st.over = 0
        self._emit(st, key, cp, now, ALLOWED, 0, "reset", out)

    def next_due(self) -> float | None:
        """Event time of the next ban end or throttle lift (None: nothing scheduled)."""
        return self.timers.next_due()

    # -- key states and the table -------------------------------------------------------------
    def _new(self, key: str, ts: float, *, first_hit: bool = False) -> KeyState:
        # A first request is stored with the state, allocated at its exact size.
        st = KeyState.first_hit(ts) if first_hit else KeyState()
        self.store[key] = st
        self._file(key, ts + DAY)
        return st

    def _file(self, key: str, when: float) -> None:
        hour = int(when // HOUR) + 1
        if self._gc_hour is not None and hour < self._gc_hour:
            hour = self._gc_hour
        keys = self._gc.get(hour)
        if keys is None:
            self._gc[hour] = [key]
        else:
            keys.append(key)

    def _evict(self, now: float, out: Batch) -> None:
        # Hour buckets of keys that may have gone idle: O(due) like the timers, 8 bytes a key.
        hour = int(now // HOUR)
        start = self._gc_hour if self._gc_hour is not None else min(self._gc, default=hour + 1)
        for h in range(start, hour + 1):
            for key in self._gc.pop(h, ()):
                st = self.store.get(key)
                if st is None:
                    continue
                last = st.last_ts
                busy_until = (last + DAY) if last is not None else now
                if busy_until <= now:
                    off = st.off
                    cp = self._compiled(key.split(":", 1)[0]) if off is not None else None
                    if off is None or off.idle(now, cp.policy if cp else None):
                        del self.store[key]
                        out.evicted.append(key)
                        continue
                self._file(key, max(busy_until, now + HOUR))
        self._gc_hour = hour + 1

    def adopt(self, key: str, state: KeyState) -> None:
        """Take a key's state loaded from the table (recovery, rebalance): store it, re-arm timers."""
        self.store[key] = state
        off = state.off
        if off is not None and off.ban_end is not None and off.ban_start is not None:
            self.timers.push(off.ban_end, key, BAN_END, off.ban_start)
        if 0 < state.mark < BANNED * 4:  # throttled, or a quota announced used up
            last = state.last_ts
            self.timers.push(last if last is not None else 0.0, key, THROTTLE_END, 0.0)
        last = state.last_ts
        self._file(key, (last if last is not None else 0.0) + DAY)

    # -- records ---------------------------------------------------------------------------------
    def _emit(  # noqa: PLR0917  # private, called in a handful of places with all of them
        self, st: KeyState, key: str, cp: CompiledPolicy, t: float, state: int, window: int,
        reason: str, out: Batch, reset: float | None = None,
    ) -> None:
        exhausted = state == ALLOWED and reset is not None
        st.mark = _EXHAUSTED + window if exhausted else state * 4 + window
        out.changed.add(key)
        tenant, ip = key.split(":", 1)
        limit = remaining = None
        if state == THROTTLED or exhausted:
            limit, remaining = cp.limits[window], 0
        elif state == ALLOWED:
            # the tightest limited window, for RateLimit-Limit / -Remaining
            for k, lim in enumerate(cp.limits):
                if lim is not None:
                    room = max(0, lim - round(self.windows.count(st, k, t)))
                    if remaining is None or room < remaining:
                        limit, remaining = lim, room
        out.decisions.append(Decision.create(
            tenant_id=tenant, ip=ip, state=STATES[state], reason=reason, limit=limit, remaining=remaining,
            reset_ts=from_epoch(reset) if reset is not None else None,
            retry_after_s=max(0.0, reset - t) if reset is not None else None,
            shadow=cp.shadow, ts=from_epoch(t)))
