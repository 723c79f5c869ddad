"""The console's HTTP layer (aiohttp): routes, cookies, security headers; decisions live elsewhere.

Every page but the login pages needs a live session; every POST a session's CSRF token
(login forms: a double-submit cookie). Reads run in a thread (ClickHouse calls block), and
so does each action: signed with the server's key, `actor` = the owner, sent, and waited
for until the worker's audit verdict comes back (pipeline.admin).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from pipeline.console import actions as act
from pipeline.console.auth import LoginThrottle, Session, SessionStore, safe_next, tokens_match
from pipeline.console.filters import REFRESH_CHOICES, SINCE_CHOICES, Filters, parse_filters
from pipeline.console.owners import OwnerStore
from pipeline.console.queries import ANOMALY_STATUSES, TRIAL_STATUSES, QueryError, Result
from pipeline.console.reads import Reader, ReadUnavailable

__all__ = ["ConsoleConfig", "Verdict", "build_app"]

log = logging.getLogger(__name__)

SESSION_COOKIE = "tw_session"
LOGIN_COOKIE = "tw_login"
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)  # the signed-in session of a request
_FORM_FIELDS = ("action", "tenant", "ip", "cidr", "duration", "per_minute", "per_hour", "per_day", "on",
                "anomaly_id", "metric", "step", "at")
_PUBLIC = ("/login", "/login/once", "/static/console.css")
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'")


@dataclass(frozen=True)
class Verdict:
    """What became of one signed command: `outcome` accepted/rejected, or None (no answer, not sent)."""

    key: str
    nonce: str
    outcome: str | None
    reason: str


Submit = Callable[[act.ActionPlan, str], list[Verdict]]


@dataclass
class ConsoleConfig:
    reader: Reader
    owners: OwnerStore
    submit: Submit
    partition_keys: Mapping[int, str]
    secure_cookies: bool = False
    clock: Callable[[], float] = time.time
    sessions: SessionStore | None = None
    throttle: LoginThrottle | None = None


_ENV = Environment(loader=PackageLoader("pipeline.console", "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def _render(name: str, status: int = 200, **context: Any) -> web.Response:
    body = _ENV.get_template(name).render(since_choices=SINCE_CHOICES, refresh_choices=REFRESH_CHOICES,
                                          anomaly_statuses=list(ANOMALY_STATUSES), trial_statuses=list(TRIAL_STATUSES),
                                          actions=act.ACTIONS, **context)
    return web.Response(text=body, status=status, content_type="text/html")


@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.update({
        "Content-Security-Policy": _CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    })
    if isinstance(response, web.HTTPException):
        raise response
    return response


class Console:
    def __init__(self, config: ConsoleConfig):
        self.c = config
        self.sessions = config.sessions if config.sessions is not None else SessionStore()
        self.throttle = config.throttle if config.throttle is not None else LoginThrottle()

    # -- plumbing -------------------------------------------------------------------------
    def session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE), self.c.clock())

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path in _PUBLIC:
            return await handler(request)
        session = self.session(request)
        if session is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(f"/login?{_qs(next=request.path_qs)}")
            return _render("message.html", 403, title="Signed out",
                           message="Your session has expired or you are not signed in: sign in again.")
        if request.method == "POST":
            form = await request.post()
            if not tokens_match(session.csrf, _str(form.get("csrf"))):
                return _render("message.html", 403, title="Refused", session=session,
                               message="Missing or wrong CSRF token: reload the page and try again.")
        request[SESSION] = session
        return await handler(request)

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))

    async def read(self, name: str, **params: Any) -> Result:
        return await self.blocking(self.c.reader.read, name, params)  # type: ignore[no-any-return]

    def page(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        return _render(template, status, session=request[SESSION], path=request.path,
                       read_mode=self.c.reader.mode, **context)

    def _login_cookie(self, request: web.Request) -> tuple[str, bool]:
        token = request.cookies.get(LOGIN_COOKIE) or ""
        return (token, False) if len(token) >= 32 else (secrets.token_urlsafe(32), True)

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=self.c.secure_cookies)

    def _signed_in(self, owner: str, target: str) -> web.StreamResponse:
        session = self.sessions.create(owner, self.c.clock())
        response = web.HTTPSeeOther(safe_next(target))
        self._set_cookie(response, SESSION_COOKIE, session.token)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    # -- login ----------------------------------------------------------------------------
    async def login_form(self, request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
        token, fresh = self._login_cookie(request)
        response = _render("login.html", status, csrf=token, error=error,
                           next=safe_next(request.query.get("next") or _str((await request.post()).get("next"))))
        if fresh:
            self._set_cookie(response, LOGIN_COOKIE, token)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not tokens_match(request.cookies.get(LOGIN_COOKIE), _str(form.get("csrf"))):
            return await self.login_form(request, error="The form expired: try again.", status=403)
        name, now = _str(form.get("name")).strip(), self.c.clock()
        keys = (f"addr:{request.remote}", f"owner:{name.lower()}")
        wait = max(self.throttle.retry_after(k, now) for k in keys)
        if wait > 0:
            return await self.login_form(request, error=f"Too many failed sign-ins: try again in {wait:.0f} s.",
                                         status=429)
        ok = await self.blocking(self.c.owners.check_login, name, _str(form.get("password")),
                                 _str(form.get("code")), now)
        if not ok:
            for k in keys:
                self.throttle.failed(k, now)
            return await self.login_form(request, error="Wrong name, password or code.", status=401)
        for k in keys:
            self.throttle.succeeded(k)
        return self._signed_in(name, _str(form.get("next")))

    async def once_form(self, request: web.Request) -> web.Response:
        token, fresh = self._login_cookie(request)
        response = _render("once.html", csrf=token, token=request.query.get("token", ""))
        if fresh:
            self._set_cookie(response, LOGIN_COOKIE, token)
        return response

    async def once(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not tokens_match(request.cookies.get(LOGIN_COOKIE), _str(form.get("csrf"))):
            return _render("message.html", 403, title="Refused", message="The form expired: open the link again.")
        now, key = self.c.clock(), f"addr:{request.remote}"
        if self.throttle.retry_after(key, now) > 0:
            return _render("message.html", 429, title="Refused", message="Too many failed sign-ins: wait a while.")
        owner = await self.blocking(self.c.owners.redeem_one_time, _str(form.get("token")), now)
        if owner is None:
            self.throttle.failed(key, now)
            return _render("message.html", 401, title="Refused",
                           message="This one-time login is unknown, used or expired.")
        return self._signed_in(owner, "/")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # -- views ----------------------------------------------------------------------------
    async def view(self, request: web.Request, *, template: str, title: str, default_since: str,
                   query: Callable[[Filters], tuple[str, dict[str, Any]]]) -> web.Response:
        """A list view: its filters from the query string, its rows from one catalogue query."""
        filters = parse_filters(request.query, default_since)
        name, params = query(filters)
        rows: Result | None = None
        error = ""
        try:
            rows = await self.read(name, **params)
        except (ReadUnavailable, QueryError) as exc:
            error = str(exc)
        return self.page(request, template, title=title, filters=filters, data={"rows": rows}, error=error)

    def routes(self) -> list[web.RouteDef]:
        def since(f: Filters) -> dict[str, Any]:
            return {"since": f.since_s} if f.since_s is not None else {}

        def view(template: str, title: str, default_since: str,
                 query: Callable[[Filters], tuple[str, dict[str, Any]]]) -> Any:
            return partial(self.view, template=template, title=title, default_since=default_since, query=query)

        views = {
            "/anomalies": view("anomalies.html", "Open anomalies", "7d", lambda f: (
                "anomalies", {"tenant": f.tenant, "statuses": f.anomaly_statuses(), **since(f)})),
            "/offenders": view("offenders.html", "Top offenders", "24h", lambda f: (
                "offenders", {"tenant": f.tenant, "ip": f.ip, **since(f)})),
            "/bans": view("bans.html", "Bans", "7d", lambda f: ("bans", {"tenant": f.tenant, "ip": f.ip, **since(f)})),
            "/limits": view("limits.html", "Limits", "", lambda f: ("limits", {"tenant": f.tenant})),
            "/trials": view("trials.html", "Trials", "30d", lambda f: (
                "trials", {"tenant": f.tenant, "status": f.status if f.status in TRIAL_STATUSES else "", **since(f)})),
            "/audit": view("audit.html", "Audit log", "", lambda f: ("audit", {"tenant": f.tenant})),
        }
        return [
            web.get("/", self.home),
            web.get("/login", self.login_form), web.post("/login", self.login),
            web.get("/login/once", self.once_form), web.post("/login/once", self.once),
            web.post("/logout", self.logout),
            *(web.get(path, handler) for path, handler in views.items()),
            web.get("/anomalies/{anomaly_id}", self.anomaly),
            web.post("/actions/confirm", self.confirm), web.post("/actions/run", self.run),
            web.get("/static/console.css", self.css),
        ]

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/anomalies")

    async def anomaly(self, request: web.Request) -> web.Response:
        anomaly_id = request.match_info["anomaly_id"]
        try:
            found = await self.read("anomaly", id=anomaly_id)
            history = await self.read("anomaly_history", id=anomaly_id)
        except (ReadUnavailable, QueryError) as exc:
            return self.page(request, "anomaly.html", 503, title="Anomaly", error=str(exc), anomaly=None,
                             history=None)
        rows = [dict(zip(found["columns"], r, strict=True)) for r in found["rows"]]
        return self.page(request, "anomaly.html", 200 if rows else 404, title=f"Anomaly {anomaly_id}",
                         anomaly=rows[0] if rows else None, anomaly_id=anomaly_id, history=history, error="")

    async def css(self, request: web.Request) -> web.Response:
        text = _ENV.loader.get_source(_ENV, "console.css")[0]  # type: ignore[union-attr]
        return web.Response(text=text, content_type="text/css")

    # -- actions --------------------------------------------------------------------------
    async def confirm(self, request: web.Request) -> web.Response:
        form = {k: _str(v) for k, v in (await request.post()).items() if k in (*_FORM_FIELDS, "reason", "back")}
        try:
            planned = act.plan(form, self.c.partition_keys)
        except act.PlanError as exc:
            return self.page(request, "message.html", 400, title="Not sent", message=str(exc))
        fields = {k: v for k, v in form.items() if k in _FORM_FIELDS and v}
        return self.page(request, "confirm.html", title="Confirm", plan=planned, fields=fields,
                         back=safe_next(form.get("back"), "/anomalies"))

    async def run(self, request: web.Request) -> web.Response:
        form = {k: _str(v) for k, v in (await request.post()).items()}
        try:
            planned = act.plan(form, self.c.partition_keys)
        except act.PlanError as exc:
            return self.page(request, "message.html", 400, title="Not sent", message=str(exc))
        if form.get("confirm") != "yes":
            return self.page(request, "message.html", 400, title="Not sent", message="The action was not confirmed.")
        owner = request[SESSION].owner
        verdicts: list[Verdict] = await self.blocking(self.c.submit, planned, owner)
        return self.page(request, "verdict.html", title="Verdict", plan=planned,
                         verdicts=verdicts, back=safe_next(form.get("back"), "/anomalies"))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _qs(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def build_app(config: ConsoleConfig) -> web.Application:
    console = Console(config)
    app = web.Application(middlewares=[_headers, console.guard], client_max_size=64 << 10)
    app.add_routes(console.routes())
    app[CONSOLE] = console
    return app
