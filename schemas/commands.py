"""Signed admin commands: the model, its canonical form, HMAC-SHA256 signing and verification.

A command is signed over a canonical JSON form of every field except `signature`
(sorted keys, no spaces, UTF-8). Verification is constant-time. Replay protection (nonce
memory and timestamp skew) is stateful and lives with the agent that consumes commands.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from schemas._base import Record, ShortText, Timestamp

__all__ = [
    "Action",
    "AdminCommand",
    "ParamValue",
    "canonical_bytes",
    "sign",
    "signature_ok",
]


class Action(StrEnum):
    IP_BAN = "ip.ban"
    IP_UNBAN = "ip.unban"
    IP_WHITELIST = "ip.whitelist"
    IP_BLACKLIST = "ip.blacklist"
    IP_UNLIST = "ip.unlist"
    LIMITS_SET = "limits.set"
    TENANT_ENABLE = "tenant.enable"
    TENANT_DISABLE = "tenant.disable"
    TENANT_SHADOW = "tenant.shadow"
    ANOMALY_ACK = "anomaly.ack"
    ANOMALY_RESOLVE = "anomaly.resolve"
    ANOMALY_FALSE_POSITIVE = "anomaly.false_positive"
    RULE_SET = "rule.set"
    TRIALS_RUN_EXPIRY = "trials.run_expiry"
    TRIALS_RESEND = "trials.resend"


ParamValue = str | int | float | bool | None
Nonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]
Signature = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class AdminCommand(Record):
    """An admin action with who, when, a one-time nonce and an HMAC-SHA256 signature."""

    kind: str = Field(default="command", pattern=r"^command$")
    nonce: Nonce
    ts: Timestamp
    actor: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    action: Action
    tenant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    params: Annotated[dict[ParamName, ParamValue], Field(max_length=32)] = Field(default_factory=dict)
    reason: ShortText = ""
    signature: Signature

    @property
    def command_id(self) -> str:
        """Deterministic id: the nonce is unique per command by construction."""
        return self.nonce


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes a signature covers: every field but `signature`, as sorted compact JSON."""
    body = {k: v for k, v in fields.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    return hmac.new(key, canonical_bytes(fields), hashlib.sha256).hexdigest()


_UNSIGNED = "0" * 64


def sign(key: bytes, fields: dict[str, Any]) -> AdminCommand:
    """Validate unsigned fields, then sign their normalised form (what a verifier will see)."""
    draft = AdminCommand.model_validate({**fields, "signature": _UNSIGNED})
    return draft.model_copy(update={"signature": _mac(key, draft.model_dump(mode="json"))})


def signature_ok(key: bytes, command: AdminCommand) -> bool:
    """Constant-time check of the command's signature over its canonical form."""
    fields = command.model_dump(mode="json")
    return hmac.compare_digest(_mac(key, fields), command.signature)
