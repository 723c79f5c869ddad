"""The admin-command stage: verify, de-duplicate, dispatch by action, audit every outcome.

Capabilities register handlers with `CommandRouter.on(actions, handler)`. A handler returns
a short summary, or raises `CommandRejected(reason)`; either way an AuditRecord is published
(topic `audit`, table `audit_log`). Forged (bad signature), misrouted (not under the signed
tenant's key, on its partition), stale and replayed commands are rejected before any handler
runs. Nonces live in a Faust table partitioned like the commands, so a restart does not
reopen the replay window and a command meets the same memory on whichever worker owns its
partition (see `pipeline.runtime.replay`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pipeline.runtime.codec import Codec
from pipeline.runtime.replay import ReplayGuard, misrouted
from pipeline.runtime.table_codecs import JsonValue, StrKey
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import partition_for
from schemas.commands import Action, AdminCommand, signature_ok
from schemas.results import AuditRecord, stable_id

__all__ = ["CommandHandler", "CommandRejected", "CommandRouter", "audit_record"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[AdminCommand], Awaitable[str]]


class CommandRejected(Exception):
    """Raised by a handler: the command is invalid or not applicable; nothing changed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def audit_record(command: AdminCommand, outcome: str, reason: str, now: datetime, attempt: str) -> AuditRecord:
    """The audit row of one delivery `attempt` (e.g. "partition:offset") of `command`."""
    return AuditRecord(
        id=stable_id(command.nonce, attempt), nonce=command.nonce, ts=now, command_ts=command.ts,
        actor=command.actor, action=command.action.value,
        tenant_id=command.tenant_id, params_json=json.dumps(command.params, sort_keys=True)[:4096],
        outcome="accepted" if outcome == "accepted" else "rejected", reason=reason[:512],
    )


class CommandRouter:
    """Wires the commands topic to handlers; created by the runtime, one per app."""

    def __init__(self, runtime: Any, clock: Callable[[], float] = time.time):
        self.runtime = runtime
        self.clock = clock
        self.handlers: dict[Action, CommandHandler] = {}
        settings = runtime.settings
        self.key = settings.signing_key_bytes
        self.nonces = runtime.app.Table(f"{settings.app_id}-command-nonces", default=float,
                                        partitions=settings.partitions, key_type=StrKey, value_type=JsonValue)
        self.guard = ReplayGuard(settings.command_max_skew_s, self.nonces)
        self.codec: Codec[AdminCommand] = Codec(AdminCommand)
        self.accepted = 0
        self.rejected = 0
        name = topic_name(settings.topic_prefix, Topic.COMMANDS)

        async def consume(stream: Any) -> None:
            async for event in stream.events():
                await self.handle_event(name, event)

        runtime.app.agent(runtime.topic(Topic.COMMANDS), name="tenantwatch.commands")(consume)

    def on(self, actions: Iterable[Action], handler: CommandHandler) -> None:
        for action in actions:
            if action in self.handlers:
                raise ValueError(f"{action.value} already has a handler")
            self.handlers[action] = handler

    async def handle_event(self, name: str, event: Any) -> None:
        msg = event.message
        commands, bad = self.codec.decode(event.value)
        if bad:
            dead = self.runtime._dead_letters(bad, "commands", name, msg.partition, msg.offset)
            await self.runtime.send_batch(Topic.DLQ, dead, key=name)
            self.rejected += len(bad)
        for command in commands:
            outcome, reason = await self.run(command, msg.key, msg.partition)
            record = audit_record(command, outcome, reason, datetime.now(UTC), f"{msg.partition}:{msg.offset}")
            await self.runtime.send(Topic.AUDIT, record, key=command.tenant_id)
        await self.runtime.make_durable()

    async def run(self, command: AdminCommand, key: bytes | None, partition: int) -> tuple[str, str]:
        """Verify and dispatch one command read from (`key`, `partition`): ("accepted", summary) or
        ("rejected", reason)."""
        if not signature_ok(self.key, command):
            self.rejected += 1
            return "rejected", "bad signature"
        home = partition_for(command.tenant_id, self.runtime.settings.partitions)
        why = misrouted(command.tenant_id, key, partition, home) or self.guard.check(
            command.nonce, command.ts.timestamp(), self.clock())
        if why is not None:
            self.rejected += 1
            return "rejected", why
        handler = self.handlers.get(command.action)
        if handler is None:
            self.rejected += 1
            return "rejected", f"no running capability handles {command.action.value}"
        try:
            summary = await handler(command)
        except CommandRejected as exc:
            self.rejected += 1
            return "rejected", exc.reason
        except Exception as exc:  # a handler bug: refuse, record, keep the stream alive
            log.exception("command handler for %s failed", command.action.value)
            self.rejected += 1
            return "rejected", f"internal error: {exc!r}"
        self.accepted += 1
        return "accepted", summary
