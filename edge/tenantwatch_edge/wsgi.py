"""WSGI middleware (Flask, Django, any WSGI app).

    app.wsgi_app = EdgeWSGI(app.wsgi_app, bootstrap="kafka:9092", prefix="tw")      # Flask
    application = EdgeWSGI(get_wsgi_application(), bootstrap="kafka:9092")          # Django wsgi.py

The same behaviour as :mod:`tenantwatch_edge.asgi`; ``tenant`` is a function of the WSGI
environ (default the ``X-Tenant-Id`` header). The request event is queued when the server
closes the response (so latency and bytes cover the whole body).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from tenantwatch_edge.client_ip import ClientIp
from tenantwatch_edge.enforcer import Edge
from tenantwatch_edge.headers import body, headers, status

__all__ = ["EdgeWSGI", "environ_tenant"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def environ_tenant(name: str = "X-Tenant-Id") -> Callable[[Environ], str | None]:
    """A tenant function reading request header ``name``."""
    key = "HTTP_" + name.upper().replace("-", "_")

    def tenant(environ: Environ) -> str | None:
        value = environ.get(key)
        return None if value is None else str(value)

    return tenant


class _Closing:
    """The app's body, counted as the server reads it; reports the request when closed."""

    def __init__(self, inner: Iterable[bytes], done: Callable[[int], None]) -> None:
        self.inner, self.done, self.size = inner, done, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.done(self.size)


class EdgeWSGI:
    """See the module docstring; ``edge`` (shared) or the :class:`Edge` keyword arguments."""

    def __init__(self, app: Callable[[Environ, StartResponse], Iterable[bytes]], edge: Edge | None = None, *,
                 tenant: Callable[[Environ], str | None] | None = None, trusted_proxies: Iterable[str] = (),
                 **edge_kwargs: Any) -> None:
        self.app = app
        self.edge = edge if edge is not None else Edge(**edge_kwargs)
        self.tenant_of = tenant or environ_tenant()
        self.client_ip = ClientIp(trusted_proxies)
        self.unattributed = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started, wall = time.perf_counter(), time.time()
        tenant = self.tenant_of(environ)
        ip = self.client_ip.resolve(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        if tenant is None or ip is None:
            self.unattributed += 1
            return self.app(environ, start_response)
        edge = self.edge
        verdict = edge.check(tenant, ip)
        extra = headers(verdict)
        code = status(verdict)
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if code:
            text = body(verdict)
            start_response(f"{code} {HTTPStatus(code).phrase}", [
                *extra, ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text)))])
            edge.record(wall, tenant, ip, method, path, code, (time.perf_counter() - started) * 1000, len(text))
            return [text]
        seen = [500]

        def start_counted(status_line: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[0] = int(status_line[:3])
            return start_response(status_line, [*response_headers, *extra], exc_info)

        def done(size: int) -> None:
            edge.record(wall, tenant, ip, method, path, seen[0], (time.perf_counter() - started) * 1000, size)

        return _Closing(self.app(environ, start_counted), done)
