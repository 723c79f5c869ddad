"""`tenantwatch report` on the scenario, opened in headless Chromium: every panel present, no errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange
from dashboards.report import panel_element_id, write_report
from pipeline.cli import main as cli

pytestmark = pytest.mark.integration

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The report runs no script: any console line at all (errors, CSP refusals, Uncaught ...) is trouble.
_CONSOLE_TROUBLE = re.compile(r":CONSOLE[:(]|Uncaught|net::ERR_")


def chromium() -> str:
    found = next((p for p in map(shutil.which, _CANDIDATES) if p), None)
    if found is None:
        pytest.skip("no Chromium found (apt-get install -y chromium); `make test` installs it in CI")
    return found


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


def test_report_opens_in_chromium_with_every_panel(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange, tmp_path: Path
) -> None:
    """The page has one element per panel, no failed query, no console error; a screenshot is saved."""
    browser = chromium()
    out = tmp_path / "report.html"
    outcome = write_report(out, chdb_client, dash_range)
    assert outcome.failed == {}
    header = re.search(r'<div class="board" id="board-tw-ratelimit"><h2>[^<]*</h2><p class="desc">([^<]*)</p>',
                       outcome.html)
    assert header is not None
    tenants = {r[0] for r in chdb_client.query("SELECT DISTINCT tenant_id FROM requests").result_rows
               if r[0].startswith("dash-")}
    assert len(tenants) > 3
    assert sum(t in header.group(1) for t in tenants) == 0, f"the header lists tenant ids: {header.group(1)}"
    assert "tenant: all (" in header.group(1)

    dom = run_chromium(browser, tmp_path / "profile-dom", "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for board in BOARDS:
        for n in range(1, len(board.panels) + 1):
            assert f'id="{panel_element_id(board, n)}"' in dom.stdout
    assert dom.stdout.count("<img") >= 10
    assert "Query failed" not in dom.stdout

    shots = Path(os.environ.get("TW_REPORT_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report.png"
    run = run_chromium(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,5200",
                       out.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 50_000, f"screenshot looks blank: {shot}"
    assert console_trouble(run.stderr) == []


def console_trouble(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if _CONSOLE_TROUBLE.search(line)]


def test_console_check_does_catch_a_broken_page(tmp_path: Path) -> None:
    """The stderr check used above sees a script error and a blocked remote image."""
    browser = chromium()
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>throw new Error("boom")</script>'
                    '<img src="http://example.invalid/x.png"></body></html>')
    run = run_chromium(browser, tmp_path / "profile", f"--screenshot={tmp_path / 'bad.png'}", page.as_uri())
    assert any("Uncaught Error: boom" in line for line in console_trouble(run.stderr)), run.stderr[-2000:]


@pytest.mark.usefixtures("dash_scenario")
def test_report_cli_writes_the_page(
    session_dir: Path, dash_range: TimeRange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tenantwatch report --out … --from … --to …` reads the configured ClickHouse and writes every panel."""
    monkeypatch.setenv("TW_CLICKHOUSE_DSN", f"chdb://{session_dir / 'clickhouse'}")
    out = tmp_path / "cli-report.html"
    code = cli(["report", "--out", str(out), "--from", dash_range.start.isoformat(),
                "--to", dash_range.end.isoformat(), "--strict"])
    assert code == 0, capsys.readouterr().err
    total = sum(len(b.panels) for b in BOARDS)
    assert f"{total} panels, 0 failed" in capsys.readouterr().out
    assert out.read_text().count('class="panel"') == total
    assert cli(["report", "--out", str(out), "--from", "yesterday"]) == 2
