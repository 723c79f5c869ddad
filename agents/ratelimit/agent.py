"""Faust wiring of the rate limiter: requests → decisions, violations, bans, rollups; admin commands.

State. One :class:`RateLimiter` per source partition of ``requests`` (so throttles and bans
end on that partition's own event-time watermark). Its key states live in a plain dict
and are written back to the Faust table ``<app>-ratelimit-keys`` (key ``tenant:ip``, value
the :class:`KeyState` in the binary form of :mod:`~agents.ratelimit.state_codec`, changelogged)
once per changed key per runtime checkpoint (``Runtime.on_checkpoint``: every
``TW_CHECKPOINT_S`` or when input goes quiet; the batches in between become committable only
then), as a few changelog batches (:class:`pipeline.runtime.bulk.BulkWriter`).
A limiter is built lazily on the first batch of its partition after start or rebalance,
adopting the table's keys of that partition (which re-arms ban, throttle and used-up-quota timers):
a restart resets neither counters nor bans.

Configuration. Tenant policies live in the compacted topic ``<prefix>.ratelimit-policies``
(key tenant), which every worker reads whole (:class:`pipeline.runtime.broadcast.BroadcastReader`;
requests are not decided before it has caught up). The commands handler validates an
action with the pure :func:`apply_action`, applies the new policy at once, publishes it
there and publishes its history record (``limits``); other workers pick it up from the
topic. Tenants without a policy get the default :class:`TenantPolicy` (1000/hour, 10000/day).
(A Faust GlobalTable lost updates with two workers: faust-streaming #283.)

Manual bans are key state, owned by whichever worker holds the key's partition, while
commands are keyed by tenant. The handler validates them and forwards an *order* to the
internal topic ``<prefix>.ratelimit-orders`` keyed ``tenant:ip``, co-partitioned with
``requests``; the owner applies it at its partition's event time.

Rollups come in two stages (:mod:`~agents.ratelimit.rollup_stage`): each partition of
``requests`` closes its share of a tenant-minute (a *part*) on its own watermark and sends
it, with its watermark, to the combiner of the tenant's partition of ``rollup-parts``; the
combiner publishes ONE complete rollup per tenant-minute on ``rollups`` once every requests
partition has passed the minute (late parts are published flagged, and counted). Open minutes
live in the table ``<app>-ratelimit-rollups`` (written at each checkpoint), the combiners' in
``<app>-ratelimit-combine``, so a restart neither loses nor reopens a minute.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from agents.notify.config import WebhookTarget
from agents.notify.outbound import ban_notifications
from agents.ratelimit.commands import Rejected, apply_action
from agents.ratelimit.core import ALLOWED, Batch, KeyState, RateLimiter
from agents.ratelimit.rollup import MinuteRollups
from agents.ratelimit.rollup_stage import RollupStage
from agents.ratelimit.state_codec import CODEC_NAME, register_codec
from pipeline.adapters.kafka_config import client_kwargs
from pipeline.runtime.broadcast import BroadcastReader
from pipeline.runtime.codec import Codec
from pipeline.runtime.commands import CommandRejected
from pipeline.runtime.core import PartitionBatch, Runtime, StagedWrite
from pipeline.runtime.table_codecs import BytesValue, StrKey, TableValue
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import partition_for
from schemas._base import canonical_ip
from schemas.commands import Action, AdminCommand
from schemas.ratelimit import TenantPolicy

__all__ = ["ACTIONS", "KeyStateValue", "RateLimitAgent", "register"]

log = logging.getLogger(__name__)

ACTIONS = (
    Action.IP_BAN, Action.IP_UNBAN, Action.IP_WHITELIST, Action.IP_BLACKLIST, Action.IP_UNLIST,
    Action.LIMITS_SET, Action.TENANT_ENABLE, Action.TENANT_DISABLE, Action.TENANT_SHADOW,
)

class KeyStateValue(TableValue):
    """Faust value type of the key table: KeyState in its own binary form (never pickle)."""

    class _options:
        serializer = CODEC_NAME


class RateLimitAgent:
    """Holds the per-partition limiters, the tables and the handlers of one worker."""

    def __init__(self, runtime: Runtime, default: TenantPolicy | None = None) -> None:
        s = runtime.settings
        app = runtime.app
        register_codec()
        self.runtime = runtime
        self.partitions = s.partitions
        self.default = default or TenantPolicy(tenant_id="default")
        self.notify_to, self.webhooks = s.owner_email, WebhookTarget().enabled  # who hears of bans, and how
        self.keys = runtime.table(f"{s.app_id}-ratelimit-keys", default=None, key_type=StrKey,
                                  value_type=KeyStateValue)
        self._writer = runtime.bulk_writer(self.keys)
        self.open_minutes = runtime.table(f"{s.app_id}-ratelimit-rollups", default=None, key_type=StrKey,
                                          value_type=BytesValue)
        self._minutes_writer = runtime.bulk_writer(self.open_minutes)
        self.policies: dict[str, TenantPolicy] = {}
        self.broadcast = BroadcastReader(s.broker, topic_name(s.topic_prefix, Topic.RATELIMIT_POLICIES),
                                         self._on_policy, client_kwargs(s, "aiokafka"), codec=Codec(TenantPolicy))
        runtime.start_early(self.broadcast.run)  # read before recovery ends: it gates the first batch
        self.orders = app.topic(topic_name(s.topic_prefix, Topic.RATELIMIT_ORDERS), partitions=s.partitions,
                                key_serializer="raw", value_serializer="raw", internal=True)
        self.limiters: dict[int, RateLimiter] = {}
        # The table's keys by partition, built in one pass when the first limiter is rebuilt
        # after a rebalance (one pass per partition cost ~50 ms per 17k keys each).
        self._unadopted: dict[int, list[tuple[str, KeyState]]] | None = None
        self.watermarks: dict[int, float] = {}
        self.rollups: dict[int, MinuteRollups] = {}
        self.stage = RollupStage(runtime, self.rollups, self.rollup_core)
        self._policies_dirty = False
        self._dirty: defaultdict[int, dict[str, None]] = defaultdict(dict)  # partition → keys to write (ordered)
        self.counts = {"decisions": 0, "violations": 0, "bans": 0, "rollups": 0, "blocked": 0, "orders": 0,
                       "ban_notices": 0}
        runtime.on(Topic.REQUESTS, self.on_requests)
        runtime.on_checkpoint(self._snapshot)
        runtime.commands.on(ACTIONS, self.on_command)
        app.agent(self.orders, name="tenantwatch.ratelimit.orders")(self._consume_orders)
        app.on_partitions_revoked.connect(self._on_rebalance)
        app.on_partitions_assigned.connect(self._on_rebalance)
        runtime.on_resumed(self._prepare)
        runtime.add_status("ratelimit", lambda: dict(self.counts, keys=sum(len(x.store) for x in
                                                                                self.limiters.values())))
        runtime.add_status("rollups", self.stage.status)

    # -- policies ------------------------------------------------------------------------
    def policy(self, tenant: str) -> TenantPolicy:
        """The policy in force for ``tenant``: its own, else the default."""
        own = self.policies.get(tenant)
        return own if own is not None else self.default.model_copy(update={"tenant_id": tenant})

    def _on_policy(self, tenant: str, policy: TenantPolicy | None) -> None:
        if policy is None:
            self.policies.pop(tenant, None)
        else:
            self.policies[tenant] = policy  # decoded (strict JSON) by the reader's codec
        self._policies_dirty = True  # applied to the limiters before the next batch

    async def _sync_policies(self) -> None:
        await self.broadcast.ready.wait()  # never decide on the configuration of a past life
        if not self._policies_dirty:
            return
        self._policies_dirty = False
        for limiter in self.limiters.values():
            for p in self.policies.values():
                limiter.set_policy(p)

    # -- limiters and their table ------------------------------------------------------------
    async def _on_rebalance(self, *args: Any, **kwargs: Any) -> None:
        # Rebuild from the table after any assignment change: revoked keys leave memory,
        # assigned ones are adopted (with their timers) on their partition's next batch.
        # What batches and orders changed is checkpointed first, and memory is dropped before
        # another batch runs: a batch of a newly assigned partition that ran while the
        # checkpoint wrote (and was acknowledged by the next one) lost its counts and open
        # minutes with the memory, and a chaos run stored 43-84 of 125 requests of the first
        # minutes a rebalance moved as the traffic started.
        await self.runtime.checkpoint(then=self._forget)

    def _forget(self) -> None:
        self.limiters.clear()
        self._unadopted = None
        self.watermarks.clear()
        self.rollups.clear()
        self.stage.clear()

    def _prepare(self) -> None:
        """Rebuild the limiters of the owned partitions as recovery ends, not on their first batches
        (a restarted worker's first decisions waited ~0.36 s for them with 17k keys)."""
        for partition in self.runtime.owned_partitions(Topic.REQUESTS):
            self.limiter(partition)

    def limiter(self, partition: int) -> RateLimiter:
        """The limiter of ``partition``, built from the table on first use."""
        limiter = self.limiters.get(partition)
        if limiter is None:
            limiter = RateLimiter(policies=list(self.policies.values()), default=self.default)
            if self._unadopted is None:
                self._unadopted = defaultdict(list)
                for key, state in list(self.keys.items()):
                    if isinstance(state, KeyState):
                        self._unadopted[partition_for(key, self.partitions)].append((key, state))
            adopted = 0
            for key, state in self._unadopted.pop(partition, ()):
                limiter.adopt(key, state)
                adopted += 1
            self.limiters[partition] = limiter
            rollups = self.rollups[partition] = MinuteRollups(part=partition)
            opened = 0
            for key, raw in list(self.open_minutes.items()):
                if isinstance(raw, bytes) and key.startswith(rollups.prefix):
                    try:
                        rollups.restore(key, raw)
                    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # not a record we wrote
                        log.warning("refused open minute %r: %s", key, f"{type(exc).__name__}: {exc}"[:300])
                        continue
                    opened += 1
            log.info("rate limiter of partition %d adopted %d key(s) and %d open minute(s)", partition, adopted,
                     opened)
        return limiter

    def rollup_core(self, partition: int) -> MinuteRollups:
        """The open minutes of ``partition`` (with its limiter, built from the tables on first use)."""
        self.limiter(partition)
        return self.rollups[partition]

    def _changes(self, partition: int, keys: Iterable[str]) -> list[tuple[str, KeyState | None]]:
        """Table writes for `keys`: their state now, or a delete for one gone from the limiter."""
        limiter = self.limiters.get(partition)
        store = limiter.store if limiter is not None else {}
        table = self.keys.data
        return [(k, st) for k in keys if (st := store.get(k)) is not None or k in table]

    def _snapshot(self) -> list[StagedWrite]:
        """Checkpoint (`Runtime.on_checkpoint`): every key and open minute changed since the last one, encoded."""
        dirty, self._dirty = self._dirty, defaultdict(dict)
        staged = [StagedWrite(self._writer, p, self._writer.encode(self._changes(p, keys)))
                  for p, keys in dirty.items()]
        for p, rollups in self.rollups.items():
            if minutes := rollups.take_changes():
                staged.append(StagedWrite(self._minutes_writer, p, self._minutes_writer.encode(minutes)))
        return staged

    async def _publish(self, out: Batch) -> None:
        """Decisions, violations, bans and ban notices of `out`."""
        send = self.runtime.send_keyed
        await send(Topic.DECISIONS, [(f"{d.tenant_id}:{d.ip}", d) for d in out.decisions])
        await send(Topic.VIOLATIONS, [(f"{v.tenant_id}:{v.ip}", v) for v in out.violations])
        await send(Topic.BANS, [(f"{b.tenant_id}:{b.ip}", b) for b in out.bans])
        # The owner hears of each enforced ban that starts; the notifications topic is keyed by
        # recipient. ~1 kB per notice: 256 per Kafka record stays well under its 1 MB limit.
        notices = [n for b in out.bans for n in ban_notifications(b, self.notify_to, self.webhooks)]
        for i in range(0, len(notices), 256):
            await self.runtime.send_batch(Topic.NOTIFICATIONS, notices[i:i + 256], key=self.notify_to)
        c = self.counts
        c["ban_notices"] += len(notices)
        c["decisions"] += len(out.decisions)
        c["violations"] += len(out.violations)
        c["bans"] += len(out.bans)

    # -- requests ---------------------------------------------------------------------------
    async def on_requests(self, batches: Sequence[PartitionBatch]) -> None:
        """Decide every request, expire on the watermark, write back, publish; close rollups."""
        await self._sync_policies()
        for b in batches:
            limiter = self.limiter(b.partition)
            rollups = self.rollups[b.partition]
            # One pass: decide, then count the request in its minute (what decide_batch does,
            # without building the (tenant, ip, ts) tuples and walking the events twice).
            out = Batch()
            decide, add, blocked = limiter.decide, rollups.add, 0
            # Event time advances event by event: a throttle lifts or a ban ends before the
            # first request past its time (plus the lateness) is decided, wherever batches split.
            newest = b.newest_before if b.newest_before is not None else float("-inf")
            lateness = self.runtime.clock.lateness_s
            fired = self.watermarks.get(b.partition, float("-inf"))
            due = limiter.next_due()
            decisions = out.decisions
            seen = 0  # decisions made when `due` was last read
            for e in b.events:  # rows: dicts of RequestEvent's validated fields
                t = e["ts"].timestamp()
                if t > newest:
                    newest = t
                    if due is not None and due <= newest - lateness and newest - lateness > fired:
                        fired = newest - lateness
                        _merge(out, limiter.expire_timers(fired))
                        due = limiter.next_due()
                tenant, ip = e["tenant_id"], e["ip"]
                refused = decide(tenant, ip, t, out) != ALLOWED
                if refused or len(decisions) != seen:  # a throttle, ban or used-up quota: its timer may be next
                    seen = len(decisions)
                    due = limiter.next_due()
                blocked += refused
                add(tenant, ip, t, status=e["status"], latency_ms=e["latency_ms"], blocked=refused)
            self.counts["blocked"] += blocked
            wm = b.watermark
            advanced = wm is not None and wm > self.watermarks.get(b.partition, float("-inf"))
            if wm is not None and advanced:
                self.watermarks[b.partition] = wm
                _merge(out, limiter.expire(wm))
            # Key states and open minutes are written at the next checkpoint (write-behind):
            # a key touched by many batches in between is written once.
            dirty = self._dirty[b.partition]
            dirty.update(dict.fromkeys(out.changed))
            dirty.update(dict.fromkeys(out.evicted))
            await self._publish(out)
            async with self.stage.lock:
                closed = (rollups.close(wm) if wm is not None and advanced else []) + rollups.take_late()
                await self.stage.publish(b.partition, closed)  # parts and watermark to the combiners
            self.counts["rollups"] += len(closed)

    # -- admin commands -----------------------------------------------------------------------
    async def on_command(self, cmd: AdminCommand) -> str:
        """Validate and apply one rate-limit command; raise CommandRejected with the reason."""
        await self.broadcast.ready.wait()  # validate against the policy in force, not the default
        tenant = cmd.tenant_id
        now = cmd.ts.timestamp()
        probe = RateLimiter(policies=[self.policy(tenant)])
        result = apply_action(probe, tenant, cmd.action, cmd.params, now, actor=cmd.actor, reason=cmd.reason)
        if isinstance(result, Rejected):
            raise CommandRejected(result.reason)
        if cmd.action in (Action.IP_BAN, Action.IP_UNBAN):
            ip = canonical_ip(str(cmd.params["ip"]))
            order = {"nonce": cmd.nonce, "action": cmd.action.value, "tenant": tenant, "ip": ip,
                     "duration_s": cmd.params.get("duration_s"), "ts": now}
            await self.orders.send(key=f"{tenant}:{ip}".encode(), value=json.dumps(order).encode())
            verb = "ban" if cmd.action is Action.IP_BAN else "unban"
            return f"{verb} of {ip} ordered"
        new = probe.policy(tenant)
        if new is None or result.limits is None:  # apply_action always sets both for policy actions
            raise CommandRejected(f"{cmd.action.value} changed no policy")
        self.policies[tenant] = new
        for limiter in self.limiters.values():
            limiter.set_policy(new)
        await self.runtime.send_keyed(Topic.RATELIMIT_POLICIES, [(tenant, new)])
        await self.runtime.send(Topic.LIMITS, result.limits, key=tenant)
        return result.summary

    async def _consume_orders(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                await self.apply_order(event, json.loads(event.value))
            except Exception:  # a bad order must not stop the others
                log.exception("rate-limit order at offset %d failed", event.message.offset)

    async def apply_order(self, event: Any, order: dict[str, Any]) -> None:
        """Apply a manual ban/unban at the owner of the key, at its partition's event time."""
        partition = event.message.partition
        await self._sync_policies()
        limiter = self.limiter(partition)
        now = self.watermarks.get(partition)
        if now is None:  # nothing seen on this partition yet: the command's own time
            now = float(order["ts"])
        tenant, ip = order["tenant"], order["ip"]
        if order["action"] == Action.IP_BAN.value:
            if limiter.policy(tenant) is None:
                limiter.set_policy(self.policy(tenant))
            duration = order.get("duration_s")
            out = limiter.ban(tenant, ip, now, None if duration is None else float(duration), order_id=order["nonce"])
        else:
            out = limiter.unban(tenant, ip, now, order_id=order["nonce"])
        self.counts["orders"] += 1
        dirty = self._dirty[partition]
        dirty.update(dict.fromkeys(out.changed))
        dirty.update(dict.fromkeys(out.evicted))
        await self._publish(out)
        # Checkpointed now: Faust acknowledges an order when this returns, not at a checkpoint.
        await self.runtime.checkpoint()


def _merge(into: Batch, other: Batch) -> None:
    into.decisions.extend(other.decisions)
    into.violations.extend(other.violations)
    into.bans.extend(other.bans)
    into.changed.update(other.changed)
    into.evicted.extend(other.evicted)


def register(runtime: Runtime) -> None:
    """Wire the rate limiter into ``runtime`` (called by the app factory)."""
    RateLimitAgent(runtime)
