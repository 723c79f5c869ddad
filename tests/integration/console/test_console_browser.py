"""The owner console in headless Chromium on the real stack (Kafka, a worker, the writer's read API, chDB).

An owner signs in with a password and a TOTP code, bans an IP from the offenders list and
acknowledges an anomaly; both land, signed in her name, in ClickHouse and the audit log.
Wrong passwords and codes, a missing CSRF token and an expired session are refused.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from pipeline.console import totp
from tests.conftest import wait_for
from tests.integration.anomaly.anomaly_helpers import produce, series, wait_for_anomaly
from tests.integration.console.conftest import IDLE_S, ConsoleStack
from tests.integration.ratelimit.conftest import T0, admin, publish, requests, rows, ticks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ABUSER = "192.0.2.77"
PHONE = {"width": 375, "height": 740}
PASSWORD = "correct horse battery"  # noqa: S105 - the test owner's, made by the fixture


def code(stack: ConsoleStack) -> str:
    return totp.totp(stack.totp_secret, stack.clock())


def next_step(stack: ConsoleStack) -> None:
    """A TOTP code is good once: move the console's clock to the next step for the next sign-in."""
    stack.clock.now += totp.STEP_S


def sign_in(page: Any, stack: ConsoleStack, *, password: str = PASSWORD, totp_code: str | None = None,
            target: str = "/anomalies") -> Any:
    page.goto(stack.url + target)
    assert "/login" in page.url, "an anonymous visit goes to the sign-in page"
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", password)
    page.fill("input[name=code]", totp_code if totp_code is not None else code(stack))
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def no_horizontal_overflow(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_wrong_password_wrong_code_missing_csrf_and_expired_session_are_refused(console_stack, browser) -> None:
    """Every way in but the right one is refused, and a session ends after its idle time."""
    stack = console_stack
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, stack, password=PASSWORD.upper())
    assert "/login" in page.url
    assert page.locator(".error").inner_text() == "Wrong name, password or code."
    wrong = f"{(int(code(stack)) + 1) % 1_000_000:06d}"
    sign_in(page, stack, totp_code=wrong)
    assert page.locator(".error").inner_text() == "Wrong name, password or code."
    sign_in(page, stack, target="/limits")
    assert page.url == stack.url + "/limits", "signed in, back where the owner was going"
    next_step(stack)
    hostile = "<img src=x id=injected>"
    page.goto(f"{stack.url}/offenders?tenant={hostile}&since=6h")
    assert page.locator("#injected").count() == 0, "what a URL carries is escaped"
    assert page.locator(".error").inner_text() == f"tenant {hostile!r} ignored: not a tenant id"
    assert page.locator("select[name=since] option:checked").inner_text() == "6h"
    assert page.locator("meta[http-equiv=refresh]").get_attribute("content") == "30", "lists refresh themselves"

    # The session cookie is HttpOnly and SameSite=Strict.
    cookie = next(c for c in context.cookies() if c["name"] == "tw_session")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

    form = {"action": "tenant.disable", "tenant": "acme"}
    refused = context.request.post(stack.url + "/actions/confirm", form=form)
    assert refused.status == 403
    assert "CSRF" in refused.text()
    forged = context.request.post(stack.url + "/actions/run", form={**form, "confirm": "yes", "csrf": "forged"})
    assert forged.status == 403
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value")
    ok = context.request.post(stack.url + "/actions/confirm", form={**form, "csrf": csrf})
    assert ok.status == 200, "the same form with the session's token reaches the confirmation"
    assert "Disable rate limiting of tenant acme" in ok.text()

    stack.clock.now += IDLE_S + 1
    page.goto(stack.url + "/limits")
    assert "/login" in page.url, "an expired session signs the owner out"
    expired = context.request.post(stack.url + "/actions/confirm", form={**form, "csrf": csrf})
    assert expired.status == 403
    assert "expired" in expired.text()
    context.close()


def test_owner_bans_an_offender_and_acknowledges_an_anomaly(console_stack, browser) -> None:
    """From the offenders list a ban, from an anomaly an acknowledgement: verdicts shown, stored, audited."""
    stack, client = console_stack, console_stack.client
    tenant, quiet = f"cw-{uuid.uuid4().hex[:6]}", f"cq-{uuid.uuid4().hex[:6]}"
    limits = {"per_minute": 10, "per_hour": 1000, "per_day": 10000, "violation_threshold": 100}
    assert admin(stack.settings, _action("limits.set"), tenant, **limits).outcome == "accepted"
    publish(stack.settings, [*requests(tenant, ABUSER, 40), *ticks(tenant, T0 + timedelta(seconds=120))])
    spike = dict.fromkeys(range(60, 63), 4.0)
    from pipeline.runtime.topics import Topic
    from schemas.anomaly import MetricName

    points = series(quiet, MetricName.REQUEST_VOLUME, 64, 800, seed=5, effect=spike)
    produce(stack.settings, Topic.METRICS, ((p.tenant, p) for p in points))
    wait_for(lambda: rows(client, "SELECT count() FROM rl_violations FINAL WHERE tenant_id = {t:String}",
                          t=tenant)[0][0] > 0, timeout=180, what="the abuser's violations in ClickHouse")
    anomaly = wait_for_anomaly(client, quiet, MetricName.REQUEST_VOLUME)

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(150_000)  # an action waits for the worker's verdict
    # The boards' data link of a "Top offenders" row.
    sign_in(page, stack, target=f"/offenders?tenant={tenant}&ip={ABUSER}")
    next_step(stack)
    assert page.url.endswith(f"/offenders?tenant={tenant}&ip={ABUSER}")
    row = page.locator("tbody tr", has_text=ABUSER)
    assert row.count() == 1
    row.locator("select[name=duration]").select_option("1h")
    with page.expect_navigation():
        row.locator("button", has_text="Ban").click()
    assert page.locator(".summary").inner_text() == f"Ban {ABUSER} on tenant {tenant} for 1h"
    page.fill("input[name=reason]", "scraping")
    with page.expect_navigation():
        page.click("button.primary")
    verdict = page.locator(".verdict").inner_text()
    assert verdict.startswith(f"accepted: ban of {ABUSER} ordered"), verdict

    wait_for(lambda: rows(client, "SELECT action, reason FROM rl_bans FINAL WHERE tenant_id = {t:String} "
                                  "AND ip = {ip:String}", t=tenant, ip=ABUSER) == [("started", "manual")],
             timeout=120, what="the manual ban in ClickHouse")
    audit = "SELECT actor, outcome, reason FROM audit_log FINAL WHERE tenant_id = {t:String} AND action = {a:String}"
    wait_for(lambda: rows(client, audit, t=tenant, a="ip.ban") == [("alice", "accepted", f"ban of {ABUSER} ordered")],
             timeout=120, what="the ban in the audit log, by alice")
    page.goto(f"{stack.url}/bans?tenant={tenant}")
    assert page.locator("tbody tr", has_text=ABUSER).locator("td").nth(2).inner_text() == "started"

    # The boards' data link of an anomaly row, from the list.
    page.goto(f"{stack.url}/anomalies?tenant={quiet}")
    with page.expect_navigation():
        page.click(f"a[href='/anomalies/{anomaly['id']}']")
    assert page.url == f"{stack.url}/anomalies/{anomaly['id']}"
    with page.expect_navigation():
        page.click("button:text-is('Acknowledge')")
    assert page.locator(".summary").inner_text().startswith(f"Acknowledge: anomaly {anomaly['id']}")
    with page.expect_navigation():
        page.click("button.primary")
    assert page.locator(".verdict strong").inner_text() == "accepted"
    status = "SELECT status FROM anomalies FINAL WHERE id = {i:String}"
    wait_for(lambda: rows(client, status, i=anomaly["id"]) == [("acknowledged",)], timeout=120,
             what="the anomaly acknowledged in ClickHouse")
    history = "SELECT to_status, actor FROM anomaly_status FINAL WHERE anomaly_id = {i:String} ORDER BY ts, to_status"
    wait_for(lambda: ("acknowledged", "alice") in rows(client, history, i=anomaly["id"]), timeout=120,
             what="alice's acknowledgement in the status history")
    wait_for(lambda: rows(client, audit, t=quiet, a="anomaly.ack") and
             rows(client, audit, t=quiet, a="anomaly.ack")[0][:2] == ("alice", "accepted"),
             timeout=120, what="the acknowledgement in the audit log")
    page.goto(f"{stack.url}/anomalies/{anomaly['id']}")
    assert re.search(r"active\s+acknowledged\s+alice", page.locator("table").inner_text())

    # The same views at a phone's width: nothing wider than the screen.
    page.set_viewport_size(PHONE)
    for path in (f"/offenders?tenant={tenant}", f"/anomalies?tenant={quiet}", f"/anomalies/{anomaly['id']}",
                 f"/bans?tenant={tenant}", "/audit", "/limits", "/trials"):
        page.goto(stack.url + path)
        assert no_horizontal_overflow(page), f"{path} overflows at {PHONE['width']} px"
    context.close()


def test_one_time_login_works_once_and_failed_sign_ins_are_throttled(console_stack, browser) -> None:
    """A one-time link signs in once (and signing out ends it); five failed sign-ins from an address
    (the spent link was one) block it."""
    stack = console_stack
    token = stack.owners.issue_one_time("alice", stack.clock())
    for expected in ("/anomalies", "/login/once"):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{stack.url}/login/once?token={token}")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url.startswith(stack.url + expected), "used once, the link is refused"
        if expected == "/anomalies":
            with page.expect_navigation():
                page.click("form.logout button")
            page.goto(stack.url + "/anomalies")
            assert "/login" in page.url, "signed out"
        context.close()

    context = browser.new_context()
    page = context.new_page()
    for _ in range(4):
        sign_in(page, stack, password=PASSWORD[::-1])
        assert page.locator(".error").inner_text() == "Wrong name, password or code."
    sign_in(page, stack)
    assert page.locator(".error").inner_text() == "Too many failed sign-ins: try again in 300 s.", \
        "even the right password and code wait"
    context.close()


def _action(name: str) -> Any:
    from schemas.commands import Action

    return Action(name)
