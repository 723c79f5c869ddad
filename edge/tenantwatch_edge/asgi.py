"""ASGI middleware (Starlette, FastAPI, any ASGI app).

    app.add_middleware(EdgeMiddleware, bootstrap="kafka:9092", prefix="tw")

Every HTTP request: tenant and client IP resolved (``tenant``: a function of the scope,
default the ``X-Tenant-Id`` header; ``trusted_proxies``: CIDRs whose ``X-Forwarded-For`` is
believed), the verdict looked up in memory, refused requests answered 429/403 without
calling the app, rate-limit headers added to every response, and a request event queued
after the response (status, latency, bytes). A request whose tenant or IP cannot be told
passes untouched and unreported (counted in ``unattributed``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import lru_cache
from typing import Any

from tenantwatch_edge.client_ip import ClientIp
from tenantwatch_edge.enforcer import Edge
from tenantwatch_edge.headers import body, headers, status

__all__ = ["EdgeMiddleware", "header_tenant"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header_tenant(name: str = "x-tenant-id") -> Callable[[Scope], str | None]:
    """A tenant function reading request header ``name``."""
    key = name.lower().encode()

    def tenant(scope: Scope) -> str | None:
        for k, v in scope["headers"]:
            if k == key:
                return str(v.decode("latin-1"))
        return None

    return tenant


@lru_cache(maxsize=4096)
def _encoded(pairs: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


class EdgeMiddleware:
    """See the module docstring; ``edge`` (shared) or the :class:`Edge` keyword arguments."""

    def __init__(self, app: Callable[..., Awaitable[None]], edge: Edge | None = None, *,
                 tenant: Callable[[Scope], str | None] | None = None, trusted_proxies: Iterable[str] = (),
                 **edge_kwargs: Any) -> None:
        self.app = app
        self.edge = edge if edge is not None else Edge(**edge_kwargs)
        self.tenant_of = tenant or header_tenant()
        self.client_ip = ClientIp(trusted_proxies)
        self.unattributed = 0

    def _ip(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer = client[0] if client else None
        xff = None
        if self.client_ip.trusted:
            for k, v in scope["headers"]:
                if k == b"x-forwarded-for":
                    xff = v.decode("latin-1") if xff is None else f"{xff},{v.decode('latin-1')}"
        return self.client_ip.resolve(peer, xff)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, wall = time.perf_counter(), time.time()
        tenant, ip = self.tenant_of(scope), self._ip(scope)
        if tenant is None or ip is None:
            self.unattributed += 1
            await self.app(scope, receive, send)
            return
        edge = self.edge
        verdict = edge.check(tenant, ip)
        extra = _encoded(tuple(headers(verdict)))
        code = status(verdict)
        method, path = scope["method"], scope["path"]
        if code:
            text = body(verdict)
            await send({"type": "http.response.start", "status": code, "headers": [
                *extra, (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]})
            await send({"type": "http.response.body", "body": text})
            edge.record(wall, tenant, ip, method, path, code, (time.perf_counter() - started) * 1000, len(text))
            return
        seen = [500, 0]  # status, body bytes (500 if the app fails before answering)

        async def send_counted(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                seen[0] = message["status"]
                if extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            elif kind == "http.response.body":
                seen[1] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            edge.record(wall, tenant, ip, method, path, seen[0], (time.perf_counter() - started) * 1000, seen[1])
