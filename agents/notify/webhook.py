"""Webhooks for what needs a human now: a Slack-compatible JSON body, HMAC-SHA256 signed.

Signature (Slack's scheme, our header names): `X-Tenantwatch-Timestamp: <unix seconds>` and
`X-Tenantwatch-Signature: v1=<hex HMAC-SHA256(secret, "v1:<timestamp>:<body>")>`. Receivers
recompute it over the raw body and reject stale timestamps. `WebhookSender` posts with
aiohttp and retries 429/5xx and connection errors with exponential back-off and jitter (each
attempt signed afresh); it refuses an empty secret. `X-Tenantwatch-Notification` carries the
notification id, for receivers to deduplicate on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any

from pipeline.adapters.smtp import DeliveryResult, RetryPolicy, Sleep
from schemas.notify import DeliveryStatus, Notification, Severity

__all__ = ["WebhookSender", "sign", "slack_payload", "verify"]

_EMOJI = {Severity.INFO: ":information_source:", Severity.WARNING: ":warning:", Severity.CRITICAL: ":rotating_light:"}


def _headline(n: Notification) -> str:
    v = n.variables
    if n.kind == "ban_notice":
        return f"IP {v.get('ip')} banned on {n.tenant_id}: {v.get('reason')}"
    if n.kind == "anomaly_alert":
        return f"{str(v.get('severity', n.severity.value)).upper()} {v.get('metric')} anomaly on {n.tenant_id}"
    return f"{n.kind} for {n.tenant_id}"


def _escape(text: str) -> str:
    """Slack mrkdwn control characters; tenant data must not become links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(n: Notification) -> dict[str, Any]:
    """A body Slack incoming webhooks accept (`text` + blocks); other receivers read `tenantwatch`."""
    head = _escape(_headline(n))
    fields = [{"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(str(v))}"} for k, v in sorted(n.variables.items())]
    return {
        "text": f"{_EMOJI[n.severity]} {head}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{_EMOJI[n.severity]} *{head}*"}},
            *({"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)),
        ],
        "tenantwatch": {
            "id": n.id,
            "kind": n.kind,
            "tenant_id": n.tenant_id,
            "severity": n.severity.value,
            "ts": n.ts.isoformat(),
        },
    }


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, b"v1:" + str(timestamp).encode() + b":" + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: bytes, timestamp: int, body: bytes, signature: str, *, now: float, max_skew_s: float = 300) -> bool:
    """Constant-time check, plus a freshness window against replays."""
    return abs(now - timestamp) <= max_skew_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    """POSTs signed payloads to one URL; returns a `DeliveryResult` like the mail senders."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: an empty HMAC key signs nothing")
        self.url, self._secret = url, secret
        self.retry = retry or RetryPolicy(max_attempts=5)
        self._timeout, self._sleep, self._clock = timeout_s, sleep, clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._session: Any = None

    async def send(self, n: Notification) -> DeliveryResult:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        body = json.dumps(slack_payload(n), separators=(",", ":"), ensure_ascii=False).encode()
        error, code = "", None
        for attempt in range(1, self.retry.max_attempts + 1):
            ts = int(self._clock())  # signed per attempt: a retry minutes later is still fresh
            headers = {
                "Content-Type": "application/json",
                "X-Tenantwatch-Timestamp": str(ts),
                "X-Tenantwatch-Signature": sign(self._secret, ts, body),
                "X-Tenantwatch-Notification": n.id,  # receivers deduplicate on this
            }
            try:
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    code = resp.status
                    if resp.status < 300:
                        return DeliveryResult(DeliveryStatus.SENT, attempt, "", code, n.id)
                    error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                    if resp.status != 429 and resp.status < 500:
                        return DeliveryResult(DeliveryStatus.FAILED, attempt, error, code, n.id)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error, code = f"{type(exc).__name__}: {exc}", None
            if attempt < self.retry.max_attempts:
                await self._sleep(self.retry.delay(attempt, self._rng))
        return DeliveryResult(DeliveryStatus.FAILED, self.retry.max_attempts, f"gave up: {error}", code, n.id)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
