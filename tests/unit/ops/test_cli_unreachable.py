"""The CLI says in one line that Kafka did not answer, with its own exit code, instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import EXIT_UNREACHABLE, main


def test_publish_with_no_broker_is_one_line_and_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Would fail if a missing broker ended `tenantwatch publish` with a traceback or a generic exit code."""
    monkeypatch.setenv("TW_BROKER", "127.0.0.1:1")  # nothing listens on port 1
    events = tmp_path / "one.jsonl"
    events.write_text('{"kind":"request","event_id":"x1","ts":"2026-01-01T00:00:00Z","tenant_id":"acme",'
                      '"ip":"1.2.3.4","method":"GET","path":"/","status":200,"latency_ms":1.0}\n')
    assert main(["publish", str(events)]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "Kafka at 127.0.0.1:1 did not answer" in err
    assert "Traceback" not in err
