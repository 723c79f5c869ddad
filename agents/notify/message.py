"""Build the `EmailMessage` for a rendered notification: safe headers, deterministic ids.

The Message-ID derives from the notification id, so a mail that is retried or redelivered
after a crash carries the same Message-ID and receivers (and our SMTP sink) can tell.
Header values are checked for CR/LF and other control characters before they reach the
email package (which would also refuse them, less helpfully). Addresses are validated
against the same rule as `schemas.events.Email`.
"""

from __future__ import annotations

import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from pydantic import TypeAdapter, ValidationError

from agents.notify.templates import RenderedMail
from schemas._base import check_header_safe
from schemas.events import Email
from schemas.notify import Notification

__all__ = ["InvalidMessage", "build_message", "chart_cid", "check_address", "message_id", "sender_address"]

_EMAIL: TypeAdapter[str] = TypeAdapter(Email)


class InvalidMessage(ValueError):
    """The notification cannot become a safe mail; `str(exc)` says why."""


def _safe(name: str, value: str) -> str:
    try:
        return check_header_safe(value)
    except ValueError as exc:
        raise InvalidMessage(f"{name}: {exc} in a header") from None


def check_address(value: str, what: str = "recipient") -> str:
    """`value` if it is a plain, header-safe e-mail address; InvalidMessage with the reason otherwise."""
    _safe(what, value)
    try:
        return _EMAIL.validate_python(value)
    except ValidationError as exc:
        raise InvalidMessage(f"{what}: {value!r} is not a valid address ({exc.errors()[0]['msg']})") from None


def sender_address(mail_from: str) -> Address:
    """Parse `Name <addr@domain>` (or a bare address) into a validated `Address`."""
    _safe("from", mail_from)
    name, addr = parseaddr(mail_from)
    check_address(addr, "from")
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def message_id(notification_id: str, domain: str) -> str:
    return f"<{notification_id}@{domain}>"


def chart_cid(notification_id: str, domain: str) -> str:
    """Content-ID of an inline chart (without angle brackets, as `cid:` URLs want it)."""
    return f"chart.{notification_id}@{domain}"


def build_message(
    notification: Notification,
    mail: RenderedMail,
    mail_from: str,
    *,
    chart_png: bytes | None = None,
) -> EmailMessage:
    """A multipart/alternative mail (text + HTML, the chart inline as multipart/related)."""
    sender = sender_address(mail_from)
    recipient = check_address(notification.recipient)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = _safe("subject", mail.subject)
    msg["Message-ID"] = message_id(notification.id, sender.domain)
    msg["Date"] = format_datetime(notification.ts)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to robots
    msg["X-Tenantwatch-Notification"] = notification.id
    msg["X-Tenantwatch-Kind"] = notification.kind
    msg["X-Tenantwatch-Tenant"] = notification.tenant_id
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    if chart_png is not None:
        html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
        html_part.add_related(
            chart_png, maintype="image", subtype="png", cid=f"<{chart_cid(notification.id, sender.domain)}>"
        )
        html_part.set_boundary(_boundary(notification.id, "rel"))
    # Fixed boundaries: the same notification gives byte-identical mail (easy to diff, dedupe).
    msg.set_boundary(_boundary(notification.id, "alt"))
    return msg


def _boundary(notification_id: str, part: str) -> str:
    return f"==tw-{part}-{hashlib.sha256(notification_id.encode()).hexdigest()[:32]}=="
