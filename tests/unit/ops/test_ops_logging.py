"""`pipeline.ops.logging_setup`: JSON lines with tenant and event context, or plain text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.ops.logging_setup import JsonFormatter, configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_tenant_and_event_ids(restore_root: None) -> None:
    """`extra=` context shows up as top-level keys, context fields first, odd values as text."""
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    logging.getLogger("tw.test").info("rejected %s", "event", extra={
        "event_id": "e-1", "tenant_id": "acme", "reason": "bad ts", "when": datetime(2026, 1, 5, tzinfo=UTC),
        "obj": object(),
    })
    line = json.loads(out.getvalue())
    assert list(line)[:6] == ["ts", "level", "logger", "message", "tenant_id", "event_id"]
    assert line["message"] == "rejected event"
    assert line["level"] == "info"
    assert (line["tenant_id"], line["event_id"], line["reason"]) == ("acme", "e-1", "bad ts")
    assert line["when"] == "2026-01-05T00:00:00+00:00"
    assert line["obj"].startswith("<object")


def test_json_lines_include_exceptions(restore_root: None) -> None:
    """A logged exception is one JSON line with the traceback under `exc`."""
    out = io.StringIO()
    configure_logging(json=True, level=logging.DEBUG, stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("tw").exception("failed", extra={"tenant_id": "acme"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "ValueError: boom" in json.loads(lines[0])["exc"]


def test_level_filters_and_text_mode_is_plain(restore_root: None) -> None:
    """Below the level nothing is written; text mode writes the classic line format."""
    out = io.StringIO()
    configure_logging(json=False, level="warning", stream=out)
    logging.getLogger("tw").info("hidden")
    logging.getLogger("tw").warning("shown", extra={"tenant_id": "acme"})
    text = out.getvalue()
    assert "hidden" not in text
    assert text.rstrip().endswith("WARNING tw: shown")
    assert len(logging.getLogger().handlers) == 1


def test_formatter_alone_needs_no_configuration() -> None:
    """The formatter works on any record, e.g. for a handler the caller builds."""
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m %d", (1,), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "m 1"
