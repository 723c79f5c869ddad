"""Webhooks: Slack-compatible payload, HMAC-SHA256 signature, retries against a local server."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from notify_helpers import notification

from agents.notify.webhook import WebhookSender, sign, slack_payload, verify
from pipeline.adapters.smtp import RetryPolicy
from schemas.notify import Channel, DeliveryStatus, Severity

SECRET = b"s3cret"


def _ban() -> object:
    return notification(
        "ban_notice",
        channel=Channel.WEBHOOK,
        recipient="ops-slack",
        severity=Severity.CRITICAL,
        variables={"tenant_id": "acme", "ip": "203.0.113.9", "reason": "<@here> <!channel>", "until": "soon"},
    )


def test_payload_is_slack_shaped_and_escapes_mentions() -> None:
    """`text` and `blocks` for Slack; tenant text cannot become mentions or links."""
    body = slack_payload(_ban())  # type: ignore[arg-type]
    assert body["text"].startswith(":rotating_light: IP 203.0.113.9 banned on acme")
    assert "<!channel>" not in json.dumps(body)
    assert "&lt;!channel&gt;" in json.dumps(body)
    assert body["tenantwatch"]["id"] == "n-ban_notice"


def test_signature_verifies_and_detects_tampering_and_staleness() -> None:
    """The receiver's check accepts the real body, refuses a changed body or an old timestamp."""
    body = b'{"text":"hi"}'
    sig = sign(SECRET, 1_000, body)
    assert sig.startswith("v1=")
    assert verify(SECRET, 1_000, body, sig, now=1_010)
    assert not verify(SECRET, 1_000, body + b" ", sig, now=1_010)
    assert not verify(SECRET, 1_000, body, sig, now=2_000)
    assert not verify(b"other", 1_000, body, sig, now=1_010)


@pytest.mark.integration
def test_sender_retries_5xx_then_delivers_signed_body() -> None:
    """Two 503s, then 200: delivered on attempt 3, every attempt correctly signed."""
    seen: list[tuple[bytes, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((body, request.headers["X-Tenantwatch-Timestamp"], request.headers["X-Tenantwatch-Signature"]))
        return web.Response(status=503 if len(seen) < 3 else 200)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/hook", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        delays: list[float] = []

        async def no_wait(d: float) -> None:
            delays.append(d)

        sender = WebhookSender(
            f"http://127.0.0.1:{port}/hook",
            SECRET,
            retry=RetryPolicy(5, 0.1, 1.0),
            sleep=no_wait,
            clock=lambda: 1_000.0,
        )
        try:
            result = await sender.send(_ban())  # type: ignore[arg-type]
        finally:
            await sender.close()
            await runner.cleanup()
        assert result.status is DeliveryStatus.SENT
        assert result.attempts == 3
        assert len(delays) == 2
        assert delays[1] > delays[0] / 2  # exponential steps, jittered
        for body, ts, sig in seen:
            assert verify(SECRET, int(ts), body, sig, now=1_000)

    asyncio.run(scenario())


@pytest.mark.integration
def test_sender_gives_up_on_4xx_at_once() -> None:
    """A 400 is not retried: failed after one attempt with the server's answer."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, text="bad payload")

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/hook", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        async def no_wait(d: float) -> None:
            raise AssertionError("must not retry")

        sender = WebhookSender(f"http://127.0.0.1:{port}/hook", SECRET, sleep=no_wait)
        try:
            result = await sender.send(_ban())  # type: ignore[arg-type]
        finally:
            await sender.close()
            await runner.cleanup()
        assert result.status is DeliveryStatus.FAILED
        assert result.attempts == 1
        assert "bad payload" in result.error

    asyncio.run(scenario())


def test_a_webhook_without_a_secret_is_refused() -> None:
    """Unsigned webhooks are a configuration error, caught at start-up, not a silent downgrade."""
    from pydantic import ValidationError

    from agents.notify.config import NotifyConfig

    with pytest.raises(ValueError, match="secret"):
        WebhookSender("http://127.0.0.1:9/hook", b"")
    with pytest.raises(ValidationError, match="TW_NOTIFY_WEBHOOK_SECRET"):
        NotifyConfig(webhook_url="http://127.0.0.1:9/hook")
    assert NotifyConfig(webhook_url="http://127.0.0.1:9/hook", webhook_secret="s").webhook_url  # noqa: S106 - a test secret
