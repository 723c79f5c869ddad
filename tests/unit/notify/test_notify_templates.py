"""Templates: every kind renders with its documented variables; strictness; sandbox; overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from notify_helpers import SAMPLES

from agents.notify.templates import (
    BUILTIN_DIR,
    TEMPLATE_VARIABLES,
    MissingVariables,
    TemplateRenderer,
    UnknownTemplate,
    UnsafeSubject,
)

KINDS = [
    "welcome",
    "trial_7day",
    "trial_1day",
    "trial_expired",
    "payment_failed",
    "anomaly_alert",
    "ban_notice",
    "alert_digest",
]


def test_every_kind_has_three_files_and_documented_variables() -> None:
    """Each template kind ships .subject/.txt/.html and a variable list; samples cover exactly it."""
    assert set(TEMPLATE_VARIABLES) == set(KINDS)
    for kind in KINDS:
        for ext in ("subject", "txt", "html"):
            assert (BUILTIN_DIR / f"{kind}.{ext}").is_file()
        assert set(SAMPLES[kind]) == set(TEMPLATE_VARIABLES[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_renders_with_documented_variables(kind: str) -> None:
    """Rendering with just the documented variables gives a one-line subject and both bodies."""
    mail = TemplateRenderer().render(kind, SAMPLES[kind])
    assert mail.subject
    assert "\n" not in mail.subject
    assert mail.text.strip()
    assert mail.html.lstrip().startswith("<!doctype html>")
    for value in SAMPLES[kind].values():
        if isinstance(value, str) and "\n" not in value and value:
            assert value.lower() in (mail.subject + mail.text + mail.html).lower()


@pytest.mark.parametrize(("kind", "variable"), [(k, v) for k in KINDS for v in TEMPLATE_VARIABLES[k]])
def test_each_missing_variable_raises(kind: str, variable: str) -> None:
    """Leaving out any documented variable is an error, never an empty string."""
    variables = {k: v for k, v in SAMPLES[kind].items() if k != variable}
    with pytest.raises(MissingVariables, match=variable):
        TemplateRenderer().render(kind, variables)


@pytest.mark.parametrize("kind", KINDS)
def test_templates_use_every_documented_variable(kind: str, tmp_path: Path) -> None:
    """The strict-undefined check bites inside the templates too (no variable is decorative)."""
    renderer = TemplateRenderer()
    for variable in TEMPLATE_VARIABLES[kind]:
        variables = {k: v for k, v in SAMPLES[kind].items() if k != variable}
        parts = [
            renderer._plain.get_template(f"{kind}.subject"),
            renderer._plain.get_template(f"{kind}.txt"),
            renderer._html.get_template(f"{kind}.html"),
        ]
        errors = 0
        for part in parts:
            try:
                part.render(variables)
            except UndefinedError:
                errors += 1
        assert errors, f"{kind} never uses {variable}"


def test_html_escapes_and_text_stays_plain() -> None:
    """Tenant-supplied markup is escaped in the HTML part."""
    evil = {**SAMPLES["welcome"], "contact_name": '<img src=x onerror="alert(1)">', "plan": "<b>pro</b>"}
    mail = TemplateRenderer().render("welcome", evil)
    assert "<img" not in mail.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in mail.html
    assert "<b>pro</b>" not in mail.html


def test_subject_with_newline_is_refused(tmp_path: Path) -> None:
    """A variable smuggling CR/LF into the subject fails rendering instead of injecting headers."""
    evil = {**SAMPLES["trial_expired"], "plan": "pro\r\nBcc: victim@example.com"}
    with pytest.raises(UnsafeSubject):
        TemplateRenderer().render("trial_expired", evil)


def test_override_directory_wins_file_by_file(tmp_path: Path) -> None:
    """A custom subject overrides the built-in one; the other parts still come from the package."""
    (tmp_path / "welcome.subject").write_text("Hello {{ contact_name }} from {{ tenant_id }}\n")
    mail = TemplateRenderer(override_dir=tmp_path).render("welcome", SAMPLES["welcome"])
    assert mail.subject == "Hello Ann from acme"
    assert "welcome aboard" in mail.text


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    """A custom template cannot climb to Python internals."""
    (tmp_path / "welcome.subject").write_text("{{ tenant_id.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        TemplateRenderer(override_dir=tmp_path).render("welcome", SAMPLES["welcome"])


@pytest.mark.parametrize("kind", ["../etc/passwd", "Welcome", "nope"])
def test_unknown_or_unsafe_template_names(kind: str) -> None:
    """Only plain identifiers that exist are templates."""
    with pytest.raises(UnknownTemplate):
        TemplateRenderer().render(kind, {})
