"""How the console reaches ClickHouse: directly, or through the writer's loopback read API.

- A ClickHouse server (any DSN but chdb://): the console connects itself.
- The embedded engine (chdb://): only the writer may open the data path while it runs, so
  the console asks the writer's read API (found in `<data_dir>/status/read-api.json`). When
  no writer serves that file, the console opens the path itself: the data as it was left
  (e.g. after `tenantwatch demo`); start the console after the writer, not before.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.adapters.clickhouse.read_api import SerializedClient, announcement_path, read_announcement, run_named
from pipeline.console.queries import Result
from pipeline.settings import Settings

__all__ = ["DirectReader", "ReadApiReader", "ReadUnavailable", "Reader", "open_reader"]


class ReadUnavailable(RuntimeError):
    """ClickHouse (or the writer serving it) did not answer; the message says which."""


class Reader(Protocol):
    mode: str

    def read(self, name: str, params: dict[str, Any]) -> Result: ...


@dataclass
class DirectReader:
    client: Any
    mode: str = "direct"

    def read(self, name: str, params: dict[str, Any]) -> Result:
        try:
            return run_named(self.client, name, params)
        except Exception as exc:
            if type(exc).__name__ == "QueryError":
                raise
            raise ReadUnavailable(f"ClickHouse did not answer: {exc}") from exc


@dataclass
class ReadApiReader:
    url: str
    token: str
    timeout_s: float = 30.0
    mode: str = "live, through the writer"

    def read(self, name: str, params: dict[str, Any]) -> Result:
        request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL the writer announced
            f"{self.url}/query", data=json.dumps({"name": name, "params": params}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                detail = exc.reason
            raise ReadUnavailable(f"the writer's read API refused: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ReadUnavailable(f"the writer's read API at {self.url} did not answer ({exc}); is the writer "
                                  "running? A writer that was killed leaves status/read-api.json behind") from None


def open_reader(settings: Settings) -> Reader:
    """The reader for `settings`' ClickHouse (see the module doc for which)."""
    from pipeline.adapters.clickhouse.client import connect

    found = read_announcement(announcement_path(settings)) if settings.dsn.startswith("chdb://") else None
    if found is not None:
        return ReadApiReader(*found)
    quiet = logging.getLogger("clickhouse_connect")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its retry warnings would only repeat the one line below
    try:
        client = SerializedClient(connect(settings.dsn))
    except Exception as exc:  # clickhouse-connect raises its own errors, and chDB others, for a path in use
        raise ReadUnavailable(f"ClickHouse at {_shown(settings.dsn)} did not answer: {exc}") from None
    finally:
        quiet.setLevel(level)
    if settings.dsn.startswith("chdb://"):
        return DirectReader(client, mode="the writer is not running: the data as it was left")
    return DirectReader(client, mode="direct, ClickHouse server")


def _shown(dsn: str) -> str:
    """The DSN without a password."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return dsn.replace(f":{parts.password}@", ":***@", 1)
