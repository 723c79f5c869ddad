"""Fixtures for the trial and notification tests on the real stack: an SMTP sink per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devstack.smtp_sink import SmtpSink


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """A real aiosmtpd server on a free port, writing mail under the test's tmp dir (not started)."""
    s = SmtpSink(tmp_path / "mail")
    try:
        yield s
    finally:
        s.stop()
