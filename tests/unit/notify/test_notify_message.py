"""Building mails: deterministic Message-ID, header-injection and HTML-injection neutralised."""

from __future__ import annotations

import email
from email.policy import default as default_policy

import pytest
from notify_helpers import SAMPLES, notification
from pydantic import ValidationError

from agents.notify.message import InvalidMessage, build_message, check_address, message_id
from agents.notify.templates import RenderedMail, TemplateRenderer, UnsafeSubject
from schemas.events import BillingEvent

FROM = "tenantwatch <alerts@tenantwatch.local>"


def _build(kind: str = "welcome", **changes: object) -> email.message.EmailMessage:
    n = notification(kind, **changes)
    return build_message(n, TemplateRenderer().render(n.kind, n.variables), FROM)


def test_message_id_is_derived_from_the_notification_id() -> None:
    """Same notification → same Message-ID, built twice; headers carry the essentials."""
    a, b = _build(), _build()
    assert a["Message-ID"] == b["Message-ID"] == message_id("n-welcome", "tenantwatch.local")
    assert a["To"] == "owner@acme.example"
    assert a["Auto-Submitted"] == "auto-generated"
    assert a.as_bytes() == b.as_bytes()


def test_multipart_alternative_with_text_and_html() -> None:
    """The mail has a text part and an HTML part, in that order."""
    msg = _build()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize(
    "payload",
    ["pro\r\nBcc: victim@example.com", "pro\nX-Evil: 1", "pro\rX", "pro\x00"],
)
def test_header_injection_via_variables_is_refused(payload: str) -> None:
    """CR/LF/NUL in anything that reaches the subject is refused before a header is written."""
    variables = {**SAMPLES["trial_expired"], "plan": payload}
    with pytest.raises(UnsafeSubject):
        TemplateRenderer().render("trial_expired", variables)


def test_header_injection_via_rendered_subject_is_refused() -> None:
    """Even a subject built elsewhere cannot carry a line break into the headers."""
    n = notification()
    with pytest.raises(InvalidMessage, match="subject"):
        build_message(n, RenderedMail("Hi\r\nBcc: x@y.example", "t", "<p>h</p>"), FROM)


@pytest.mark.parametrize(
    "address",
    [
        "owner@acme.example\r\nBcc: victim@example.com",
        "no-at-sign",
        "a@b",
        "Eve <eve@x.example>",
        "a,b@x.example",
        "a@x.example>",
        "",
    ],
)
def test_invalid_addresses_are_rejected_with_a_reason(address: str) -> None:
    """Addresses must be one plain address: injections and garbage are refused, saying why."""
    with pytest.raises(InvalidMessage) as exc:
        check_address(address)
    assert str(exc.value)


def test_schema_already_refuses_bad_recipients_and_names() -> None:
    """The event and notification schemas refuse CR/LF in contacts before they reach us."""
    with pytest.raises(ValidationError):
        notification(recipient="a@x.example\nBcc: v@y.example")
    with pytest.raises(ValidationError):
        BillingEvent.model_validate(
            {
                "event_id": "e1",
                "ts": "2026-03-02T00:00:00Z",
                "tenant_id": "acme",
                "type": "trial_started",
                "plan": "pro",
                "trial_days": 14,
                "contact_email": "a@x.example",
                "contact_name": "Ann\r\nBcc: v@y.example",
            }
        )


def test_bad_sender_is_rejected() -> None:
    """A From setting with a line break is refused."""
    n = notification()
    with pytest.raises(InvalidMessage, match="from"):
        build_message(n, TemplateRenderer().render(n.kind, n.variables), "x <a@b.example>\r\nBcc: v@y.example")


def test_html_injection_in_tenant_fields_is_escaped_in_the_wire_format() -> None:
    """Tenant-supplied markup reaches the HTML part only escaped, also after a serialise/parse trip."""
    msg = _build(variables={**SAMPLES["welcome"], "contact_name": "<script>alert(1)</script>"})
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default_policy)
    html = next(p for p in parsed.walk() if p.get_content_type() == "text/html").get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_inline_chart_is_related_to_the_html_part() -> None:
    """With a chart, the HTML part becomes multipart/related holding the PNG under its Content-ID."""
    n = notification("anomaly_alert")
    from agents.notify.message import chart_cid

    cid = chart_cid(n.id, "tenantwatch.local")
    mail = TemplateRenderer().render(n.kind, {**n.variables, "chart_cid": cid})
    msg = build_message(n, mail, FROM, chart_png=b"\x89PNG\r\n\x1a\nfake")
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == f"<{cid}>"
    assert f'src="cid:{cid}"' in mail.html


def test_non_ascii_names_survive_the_wire() -> None:
    """A subject with non-ASCII text is encoded for the header and decodes back unchanged."""
    msg = _build("trial_expired", variables={**SAMPLES["trial_expired"], "plan": "Prämie"})
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default_policy)
    assert parsed["Subject"] == "Your Prämie trial has ended"
    assert msg.as_bytes().isascii()
