"""Connecting to ClickHouse: embedded chDB (`chdb:///abs/path`) or a server URL, one API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["connect"]


def connect(dsn: str) -> Any:
    """A clickhouse-connect client for `dsn`. chDB allows one data path per process."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)
