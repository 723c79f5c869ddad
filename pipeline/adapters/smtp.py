"""Sending mail: the `MailSender` interface, the aiosmtplib adapter and an in-memory double.

`SmtpMailer` keeps one SMTP connection open across sends (one at a time, under a lock),
reconnects when the server went away, and retries transient failures (4xx answers,
connection errors, timeouts) with exponential back-off and jitter. A permanent refusal of
the recipient or the message (5xx) is `bounced`; a permanent error that is ours (auth,
sender refused) or retries running out is `failed`. It never deduplicates: callers key
deliveries by notification id, and the Message-ID stays the same across retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import aiosmtplib

from schemas.notify import DeliveryStatus

if TYPE_CHECKING:
    from pipeline.settings import Settings

__all__ = ["DeliveryResult", "MailSender", "MemoryMailer", "RetryPolicy", "SmtpMailer"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    status: DeliveryStatus
    attempts: int
    error: str = ""
    code: int | None = None  # the server's last reply code, when there was one
    message_id: str = ""


@runtime_checkable
class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> DeliveryResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """'Equal jitter': half the exponential step fixed, half random, so retries spread out."""
        step = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return step / 2 + rng.uniform(0, step / 2)


class _Transient(Exception):
    def __init__(self, error: str, code: int | None = None, *, connection: bool = False) -> None:
        super().__init__(error)
        self.code = code
        self.connection = connection


Sleep = Callable[[float], Awaitable[None]]


class SmtpMailer:
    """The aiosmtplib adapter; see the module docstring for the failure policy."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool = False,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._auth = (username, password) if username else None
        self._use_tls, self._start_tls, self._timeout = use_tls, start_tls, timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections = 0  # how many times we connected (for tests and the bench)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> SmtpMailer:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_user,
            password=password,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            **kwargs,  # type: ignore[arg-type]
        )

    async def _connection(self) -> tuple[aiosmtplib.SMTP, bool]:
        """The open connection (reused=True) or a new one."""
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp, True
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self._use_tls,
            start_tls=self._start_tls,
            timeout=self._timeout,
        )
        await smtp.connect()
        self.connections += 1
        if self._auth is not None:
            await smtp.login(self._auth[0] or "", self._auth[1] or "")
        self._smtp = smtp
        return smtp, False

    async def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):  # it is going away either way
                smtp.close()

    async def _attempt(self, message: EmailMessage) -> tuple[DeliveryStatus, str, int | None]:
        reused = False
        try:
            smtp, reused = await self._connection()
            errors, reply = await smtp.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(c >= 500 for c in codes):
                return DeliveryStatus.BOUNCED, text, codes[0]
            raise _Transient(text, codes[0]) from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"{exc.code} {exc.message}"
            if exc.code < 500:  # 4xx, or no code at all: worth another try
                raise _Transient(text, exc.code) from exc
            if isinstance(exc, (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPSenderRefused)):
                return DeliveryStatus.FAILED, text, exc.code
            return DeliveryStatus.BOUNCED, text, exc.code
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. a UTF-8 address and no SMTPUTF8: retrying won't help
            return DeliveryStatus.FAILED, f"not supported by the server: {exc}", None
        except (OSError, aiosmtplib.SMTPException) as exc:  # disconnects, refused connections, timeouts
            await self._drop()
            raise _Transient(f"{type(exc).__name__}: {exc}", connection=reused) from exc
        if errors:  # some recipients refused, others accepted: we send one recipient per mail
            first = next(iter(errors.values()))
            return DeliveryStatus.BOUNCED, f"{first.code} {first.message}", first.code
        return DeliveryStatus.SENT, reply, 250

    async def send(self, message: EmailMessage) -> DeliveryResult:
        mid = str(message.get("Message-ID", ""))
        async with self._lock:
            attempt, error, code = 0, "", None
            while attempt < self.retry.max_attempts:
                attempt += 1
                try:
                    status, error, code = await self._attempt(message)
                    return DeliveryResult(status, attempt, "" if status is DeliveryStatus.SENT else error, code, mid)
                except _Transient as exc:
                    error, code = str(exc), exc.code
                    if exc.connection:
                        # A kept-alive connection the server had closed: reconnect at once, for free.
                        attempt -= 1
                        continue
                if attempt < self.retry.max_attempts:
                    await self._sleep(self.retry.delay(attempt, self._rng))
            return DeliveryResult(DeliveryStatus.FAILED, attempt, f"gave up: {error}", code, mid)

    async def close(self) -> None:
        async with self._lock:
            if self._smtp is not None and self._smtp.is_connected:
                with contextlib.suppress(OSError, aiosmtplib.SMTPException):
                    await self._smtp.quit()
            await self._drop()


@dataclass
class MemoryMailer:
    """Test double: keeps every message; `script` (optional) gives the outcomes in order."""

    script: Sequence[DeliveryStatus] = ()
    messages: list[EmailMessage] = field(default_factory=list)
    closed: bool = False

    async def send(self, message: EmailMessage) -> DeliveryResult:
        i = len(self.messages)
        self.messages.append(message)
        status = self.script[i] if i < len(self.script) else DeliveryStatus.SENT
        error = "" if status is DeliveryStatus.SENT else f"scripted {status.value}"
        return DeliveryResult(
            status, 1, error, 250 if status is DeliveryStatus.SENT else 550, str(message.get("Message-ID", ""))
        )

    async def close(self) -> None:
        self.closed = True

    def by_recipient(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]
