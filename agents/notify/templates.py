"""Mail templates: sandboxed Jinja2, strict about variables, HTML autoescaped.

Each kind has three files under `agents/notify/templates/` (or an override directory, which
wins file by file): `<kind>.subject`, `<kind>.txt` and `<kind>.html` (which may extend
`_layout.html`). Syntax is Jinja2: `{{ variable }}`, `{% if ... %}`. Templates run in an
immutable sandbox, so a custom template cannot reach Python internals; a variable a template
uses but the notification lacks is an error, never an empty string; the HTML part escapes
every value (tenant names are input); the subject must render to a single line.

Variables per template (`TEMPLATE_VARIABLES`; all required; extra variables are allowed):
- welcome, trial_7day, trial_1day: tenant_id, contact_name, plan, trial_days, trial_end, days_left
- trial_expired: tenant_id, contact_name, plan, trial_days, trial_end
- payment_failed: tenant_id, contact_name, amount, attempt, grace_end, days_left
- anomaly_alert: tenant_id, metric, value, baseline, severity, detected_at, description
  (optional: expected, band, deviation, as the anomaly agent sends them; chart_cid, set by
  the notifier when a chart is attached)
- ban_notice: tenant_id, ip, reason, until
- alert_digest: tenant_id, count, folded, summary (one line per alert), window_start, window_end
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "BUILTIN_DIR",
    "TEMPLATE_VARIABLES",
    "MissingVariables",
    "RenderedMail",
    "TemplateRenderer",
    "UnknownTemplate",
    "UnsafeSubject",
]

BUILTIN_DIR = Path(__file__).parent / "templates"
_TRIAL = ("tenant_id", "contact_name", "plan", "trial_days", "trial_end", "days_left")
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "welcome": _TRIAL,
    "trial_7day": _TRIAL,
    "trial_1day": _TRIAL,
    "trial_expired": _TRIAL[:-1],
    "payment_failed": ("tenant_id", "contact_name", "amount", "attempt", "grace_end", "days_left"),
    "anomaly_alert": ("tenant_id", "metric", "value", "baseline", "severity", "detected_at", "description"),
    "ban_notice": ("tenant_id", "ip", "reason", "until"),
    "alert_digest": ("tenant_id", "count", "folded", "summary", "window_start", "window_end"),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class UnknownTemplate(LookupError):
    """No template of that kind, or a kind name that is not a plain identifier."""


class MissingVariables(ValueError):
    """The notification lacks variables its template needs."""


class UnsafeSubject(ValueError):
    """The rendered subject is not a single header-safe line."""


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class TemplateRenderer:
    """Renders `<kind>.subject/.txt/.html`; `override_dir` templates take precedence."""

    def __init__(self, override_dir: Path | None = None) -> None:
        dirs = [str(override_dir)] if override_dir is not None else []
        loader = FileSystemLoader([*dirs, str(BUILTIN_DIR)])  # first directory holding a file wins
        common = {"loader": loader, "undefined": StrictUndefined, "keep_trailing_newline": False}
        self._plain = ImmutableSandboxedEnvironment(autoescape=False, **common)  # text parts are not HTML
        self._html = ImmutableSandboxedEnvironment(autoescape=True, **common)

    def render(self, kind: str, variables: Mapping[str, object]) -> RenderedMail:
        """Render all three parts; raises on unknown kinds, missing variables, unsafe subjects."""
        if not _NAME.match(kind):
            raise UnknownTemplate(f"template name {kind!r} is not a plain identifier")
        missing = [v for v in TEMPLATE_VARIABLES.get(kind, ()) if v not in variables]
        if missing:
            raise MissingVariables(f"{kind}: missing {', '.join(missing)}")
        try:
            subject = self._plain.get_template(f"{kind}.subject").render(variables).strip()
            text = self._plain.get_template(f"{kind}.txt").render(variables)
            html = self._html.get_template(f"{kind}.html").render(variables)
        except TemplateNotFound as exc:
            raise UnknownTemplate(f"no template {exc.name!r}") from exc
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in subject):
            raise UnsafeSubject(f"{kind}: the subject must be one line without control characters")
        return RenderedMail(subject, text.rstrip() + "\n", html)
