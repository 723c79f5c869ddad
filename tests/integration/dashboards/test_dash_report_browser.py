"""The static report after a small real run (billing events → worker → SMTP → writer → chDB),
opened in headless Chromium through Playwright: the trial mail panels show the mails that went out."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange
from dashboards.report import panel_element_id, write_report
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.sdk import Publisher
from tests.conftest import wait_for
from tests.integration.trials.cohort import DAY, T0, build
from tests.integration.trials.conftest import sink  # noqa: F401 - the SMTP sink fixture, reused

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"


def element_of(board_uid: str, title: str) -> str:
    board = next(b for b in BOARDS if b.uid == board_uid)
    n = next(i for i, p in enumerate(board.panels, start=1) if p.title == title)
    return "#" + panel_element_id(board, n)


def count(client: Any, sql: str, **params: Any) -> int:
    return int(client.query(sql, parameters=params).result_rows[0][0])


def test_trial_mail_panels_show_the_mails_of_a_real_run(
    settings_factory: Any, worker_factory: Any, writer_factory: Any, chdb_client: Any, sink: Any,  # noqa: F811
    *, tmp_path: Path,
) -> None:
    """After a one-trial run, "Mails by outcome" draws a chart and "Mails sent and failed by kind"
    lists each kind sent, although every delivery is stamped with wall-clock time, months after
    the event-time range; a full-page screenshot is kept (TW_REPORT_SCREENSHOT_DIR)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    sink.start()
    settings = settings_factory(smtp_port=sink.port)
    ensure_topics(settings)
    tag = f"rep{uuid.uuid4().hex[:6]}"
    cohort = build(tag, n=1)
    worker_factory(settings, capabilities="trials,notify")
    like = f"{tag}-%"
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=50) as pub:
        pub.publish_many(cohort.events)
        pub.flush()
        sink.wait_for(cohort.mail_count, timeout=180)
        wait_for(lambda: count(chdb_client, "SELECT count() FROM deliveries FINAL WHERE status = 'sent' AND "
                               "notification_id IN (SELECT id FROM notifications WHERE tenant_id LIKE {t:String})",
                               t=like) == cohort.mail_count, timeout=120, what="a sent delivery per mail")

    tr = TimeRange.around(datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 31 * DAY, UTC))
    in_range = count(chdb_client, "SELECT count() FROM deliveries FINAL WHERE ts <= {end:DateTime64(3)} AND "
                     "notification_id IN (SELECT id FROM notifications WHERE tenant_id LIKE {t:String})",
                     end=tr.end, t=like)
    assert in_range == 0, "deliveries carry wall-clock time: a board filtering on it would show nothing"
    want = dict(chdb_client.query("SELECT kind, count() FROM notifications FINAL WHERE tenant_id LIKE {t:String} "
                                  "AND toString(channel) = 'email' GROUP BY kind", parameters={"t": like}).result_rows)
    assert sum(want.values()) == cohort.mail_count
    out = tmp_path / "report.html"
    outcome = write_report(out, chdb_client, tr)
    assert outcome.failed == {}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(out.as_uri())
            over_time = page.locator(element_of("tw-trials", "Mails by outcome"))
            assert over_time.locator("img").count() == 1
            assert "No data" not in over_time.inner_text()
            by_kind = page.locator(element_of("tw-trials", "Mails sent and failed by kind"))
            kinds = {row.locator("td").first.inner_text(): int(row.locator("td").nth(1).inner_text())
                     for row in by_kind.locator("tbody tr").all()}
            for kind, n in want.items():
                assert kinds.get(kind, 0) >= n, (kind, kinds)  # other tests' trials may share the range
            shots = Path(os.environ.get("TW_REPORT_SCREENSHOT_DIR", tmp_path))
            shots.mkdir(parents=True, exist_ok=True)
            page.locator("#board-tw-trials").screenshot(path=str(shots / "report-trials.png"))
            page.screenshot(path=str(shots / "report-full.png"), full_page=True)
            assert (shots / "report-trials.png").stat().st_size > 20_000
            assert problems == []
        finally:
            browser.close()
