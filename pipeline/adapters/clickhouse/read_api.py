"""A loopback read API in the process that owns the data, for readers chDB would lock out.

chDB admits one process per data path, and the writer is that process. It serves the
console's named queries (`pipeline.console.queries`: a name and typed parameters, never SQL)
over HTTP on 127.0.0.1, to holders of a random token that it writes, with its address, to a
file only the same user can read (`<data_dir>/status/read-api.json`).

The client is shared with the writer's inserts: `SerializedClient` lets one call at a time
reach it (a chDB connection is not safe to use from two threads at once). Queries run in the
server's own threads, never in the writer's loop; an insert waits at most for one query.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.console.queries import QueryError, Result, bind, jsonable_rows
from pipeline.settings import Settings

__all__ = ["ReadApiServer", "SerializedClient", "announcement_path", "read_announcement", "run_named"]

log = logging.getLogger(__name__)

_MAX_BODY = 64 << 10


class SerializedClient:
    """A clickhouse-connect client whose calls (query, insert, command, …) run one at a time."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


def run_named(client: Any, name: str, params: dict[str, Any]) -> Result:
    """Run catalogue query `name` with `params` (checked by `bind`) and return JSON-ready rows."""
    query, bound = bind(name, params)
    result = client.query(query.sql, parameters=bound)
    return jsonable_rows(result.column_names, result.result_rows)


def announcement_path(settings: Settings) -> Path:
    """Where a writer serving `settings`' data announces its read API."""
    return settings.data_dir / "status" / "read-api.json"


def read_announcement(path: Path) -> tuple[str, str] | None:
    """(url, token) from a read-API file, or None when there is none (no writer serving)."""
    try:
        data = json.loads(path.read_text())
        return str(data["url"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ReadApiServer:
    """Serves `POST /query {"name": …, "params": {…}}` from `client` on 127.0.0.1 until `stop()`."""

    def __init__(self, client: Any, announce: Path | None = None, port: int = 0):
        self.client = client
        self.token = secrets.token_urlsafe(32)
        self.announce = announce
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self._answer, self.token))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="read-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReadApiServer:
        self.thread.start()
        if self.announce is not None:
            self.announce.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.announce.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"url": self.url, "token": self.token, "pid": os.getpid()}, fh)
            tmp.replace(self.announce)
        return self

    def stop(self) -> None:
        if self.announce is not None:
            self.announce.unlink(missing_ok=True)
        self.httpd.shutdown()
        self.httpd.server_close()

    def _answer(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body)
            name, params = request["name"], request.get("params", {})
            if not isinstance(name, str) or not isinstance(params, dict):
                raise TypeError("name must be text and params an object")
            return 200, run_named(self.client, name, params)
        except (ValueError, KeyError, TypeError, QueryError) as exc:
            return 400, {"error": f"bad request: {exc}"}
        except Exception as exc:  # ClickHouse refused: tell the reader, keep serving
            log.warning("read API query failed: %s", exc)
            return 500, {"error": f"query failed: {exc}"}


def _handler(answer: Callable[[bytes], tuple[int, dict[str, Any]]], token: str) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            given = (self.headers.get("Authorization") or "").encode()
            if not hmac.compare_digest(given, expected):
                return self._send(401, {"error": "unauthorized"})
            if self.path != "/query":
                return self._send(404, {"error": "not found"})
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if not 0 < length <= _MAX_BODY:
                return self._send(400, {"error": "bad request: body size"})
            return self._send(*answer(self.rfile.read(length)))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("read API: " + format, *args)

    return Handler
