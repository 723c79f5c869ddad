"""The CLI against the real broker: `publish -` reads standard input, and a command no worker
answers exits 5 (the `--json` of reading commands: tests/integration/dashboards/test_dash_cli_json.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.cli import main
from pipeline.cli._common import Exit
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

REQUEST = ('{"kind":"request","event_id":"cli-1","ts":"2026-01-01T00:00:00Z","tenant_id":"cli-acme",'
           '"ip":"203.0.113.9","method":"GET","path":"/","status":200,"latency_ms":1.0}')


def test_publish_reads_standard_input(settings_factory: Any) -> None:
    """`tenantwatch publish -` publishes the valid lines piped in and reports the invalid one."""
    settings = settings_factory()
    ensure_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.update({"TW_BROKER": settings.broker, "TW_TOPIC_PREFIX": settings.topic_prefix,
                "TW_DATA_DIR": str(settings.data_dir)})
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "publish", "-", "--strict"], cwd=ROOT, env=env,
                          input=f"{REQUEST}\nnot json\n", capture_output=True, text=True, timeout=120, check=False)
    assert "published 1 event(s); 1 invalid line(s) not sent" in done.stdout, done.stderr
    assert "-:2: not sent" in done.stderr
    assert done.returncode == Exit.FAILED  # --strict and one line was invalid


def test_a_command_no_worker_answers_exits_5(settings_factory: Any, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Sent to a live broker with no worker running: exit 5 and one line, distinct from "refused" (4)."""
    settings = settings_factory()
    ensure_topics(settings)
    monkeypatch.setenv("TW_BROKER", settings.broker)
    monkeypatch.setenv("TW_TOPIC_PREFIX", settings.topic_prefix)
    assert main(["ip", "ban", "203.0.113.9", "--tenant", "cli-acme", "--wait", "1"]) == Exit.NO_ANSWER
    err = capsys.readouterr().err
    assert "tenantwatch ip ban: ip.ban: command" in err
    assert "no worker answered within 1s" in err
