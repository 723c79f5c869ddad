"""The writer's loopback read API on chDB: named queries only, for the token holder only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.clickhouse.read_api import ReadApiServer, SerializedClient, read_announcement
from pipeline.console.reads import ReadApiReader, ReadUnavailable

pytestmark = pytest.mark.integration


def post(url: str, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + "/query", data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_read_api_answers_named_queries_to_the_token_holder(chdb_client: Any, tmp_path: Path) -> None:
    """Token and catalogue are enforced; the announcement file is private and goes with the server."""
    announce = tmp_path / "status" / "read-api.json"
    server = ReadApiServer(SerializedClient(chdb_client), announce=announce).start()
    try:
        found = read_announcement(announce)
        assert found is not None
        assert oct(announce.stat().st_mode & 0o777) == "0o600"
        url, token = found
        reader = ReadApiReader(url, token)
        result = reader.read("audit", {"tenant": "nobody-here"})
        assert result == {"columns": [], "rows": []} or result["rows"] == []
        assert post(url, b'{"name": "audit"}', None)[0] == 401
        assert post(url, b'{"name": "audit"}', token + "x")[0] == 401
        status, body = post(url, b'{"name": "DROP TABLE audit_log"}', token)
        assert (status, body["error"]) == (400, "bad request: no query 'DROP TABLE audit_log'")
        assert post(url, b'{"name": "audit", "params": {"sql": "1"}}', token)[0] == 400
        assert post(url, b"not json", token)[0] == 400
        with pytest.raises(ReadUnavailable, match="refused"):
            reader.read("nope", {})
    finally:
        server.stop()
    assert read_announcement(announce) is None
    with pytest.raises(ReadUnavailable, match="did not answer"):
        ReadApiReader(url, token, timeout_s=5).read("audit", {})
