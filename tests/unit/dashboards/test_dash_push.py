"""`tenantwatch dashboards push` against a tiny fake Grafana on 127.0.0.1 (and a closed port)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards.build import build_all
from dashboards.push import PushError, push_dashboards
from pipeline.cli import main as cli

TOKEN = "glsa_test_token"  # noqa: S105 - the fake server's own test token


class FakeGrafana(ThreadingHTTPServer):
    """Just enough of Grafana's HTTP API: folders by uid and dashboards/db, bearer-token auth."""

    def __init__(self, status: int | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.forced_status = status
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.saves: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _gate(self) -> bool:
        if self.server.forced_status:
            self._send(self.server.forced_status, {"message": "forced"})
            return False
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "invalid API key"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._gate():
            return
        uid = self.path.removeprefix("/api/folders/")
        if self.path.startswith("/api/folders/") and uid in self.server.folders:
            self._send(200, {"uid": uid, "title": self.server.folders[uid]})
        else:
            self._send(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        if not self._gate():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/folders":
            self.server.folders[body["uid"]] = body["title"]
            self._send(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            self.server.saves.append(body)
            uid = body["dashboard"]["uid"]
            if uid in self.server.dashboards and not body.get("overwrite"):
                self._send(412, {"message": "version-mismatch"})
                return
            version = self.server.dashboards.get(uid, {}).get("version", 0) + 1
            self.server.dashboards[uid] = {**body["dashboard"], "version": version}
            self._send(200, {"status": "success", "uid": uid, "url": f"/d/{uid}", "version": version})
        else:
            self._send(404, {"message": "not found"})


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def test_push_creates_folder_and_every_dashboard(fake_grafana: FakeGrafana) -> None:
    """All boards land in the folder, by uid, with overwrite set and no numeric id."""
    results = push_dashboards(fake_grafana.url, TOKEN, build_all().values(), folder="tw", folder_uid="tw-folder")
    assert fake_grafana.folders == {"tw-folder": "tw"}
    assert sorted(fake_grafana.dashboards) == sorted(r.uid for r in results) == sorted(
        m["uid"] for m in build_all().values())
    assert all(s["overwrite"] is True and s["folderUid"] == "tw-folder" for s in fake_grafana.saves)
    assert all(s["dashboard"]["id"] is None for s in fake_grafana.saves)


def test_push_twice_is_idempotent(fake_grafana: FakeGrafana) -> None:
    """A second push overwrites the same uids (new versions), creating nothing new."""
    models = list(build_all().values())
    push_dashboards(fake_grafana.url, TOKEN, models)
    second = push_dashboards(fake_grafana.url, TOKEN, models)
    assert len(fake_grafana.dashboards) == len(models)
    assert list(fake_grafana.folders) == ["tenantwatch"]
    assert {r.version for r in second} == {2}


def test_bad_token_gives_a_clear_auth_error(fake_grafana: FakeGrafana) -> None:
    """401 from Grafana becomes a message about the token, not a traceback."""
    with pytest.raises(PushError, match=r"rejected the credentials \(401 Unauthorized\).*--token"):
        push_dashboards(fake_grafana.url, "wrong", build_all().values())
    assert fake_grafana.dashboards == {}


def test_forbidden_names_the_missing_role(fake_grafana: FakeGrafana) -> None:
    """403 says which rights the token lacks."""
    fake_grafana.forced_status = 403
    with pytest.raises(PushError, match=r"403 Forbidden.*Editor"):
        push_dashboards(fake_grafana.url, TOKEN, build_all().values())


def test_connection_refused_names_the_url() -> None:
    """Nothing listening on the port: the error says it cannot connect, and where."""
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PushError, match=f"cannot connect to Grafana at {url}"):
        push_dashboards(url, TOKEN, build_all().values(), timeout=3)


def test_cli_push_exit_codes_and_messages(fake_grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints one line per board on success, and exits 1 with the reason on failure."""
    assert cli(["dashboards", "push", "--url", fake_grafana.url, "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert all(f"{uid}:" in out for uid in fake_grafana.dashboards)
    assert cli(["dashboards", "push", "--url", fake_grafana.url, "--token", "nope"]) == 1
    assert "401 Unauthorized" in capsys.readouterr().err
    assert cli(["dashboards", "push", "--url", f"http://127.0.0.1:{closed_port()}", "--token", TOKEN,
                "--timeout", "3"]) == 1
    assert "cannot connect to Grafana" in capsys.readouterr().err


def test_cli_check_passes_on_the_committed_boards(capsys: pytest.CaptureFixture[str]) -> None:
    """`tenantwatch dashboards check` finds no problem in the boards as committed."""
    assert cli(["dashboards", "check"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
