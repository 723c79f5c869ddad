"""`tenantwatch console …` exit codes: bad usage and refused starts 2, an unreachable ClickHouse 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from tests.conftest import free_port


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TW_DATA_DIR", str(tmp_path))
    return tmp_path


def add_owner(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str = "alice"
              ) -> tuple[int, str, str]:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    code = main(["console", "add-owner", name, "--password-stdin"])
    out, err = capsys.readouterr()
    return code, out, err


def errors(err: str) -> list[str]:
    """stderr without the log lines (the development key's warning)."""
    return [line for line in err.strip().splitlines() if " WARNING " not in line]


def test_add_owner_prints_the_totp_secret_and_refuses_a_bad_name(env, monkeypatch, capsys) -> None:
    """A new owner gets a TOTP secret to enrol; a name the audit log cannot carry is bad usage."""
    code, out, _ = add_owner(monkeypatch, capsys)
    assert code == 0
    assert out.startswith("owner alice added.")
    assert "otpauth://totp/tenantwatch%3Aalice?secret=" in out
    code, _, err = add_owner(monkeypatch, capsys, name="bad name")
    assert code == 2
    assert errors(err) == ["tenantwatch console: 'bad name': an owner name is 1-64 letters, digits or _ . @ -"]


def test_login_link_is_a_console_url(env, monkeypatch, capsys) -> None:
    """The one-time link points at the console's address; an unknown owner is bad usage."""
    add_owner(monkeypatch, capsys)
    assert main(["console", "login-link", "alice", "--valid", "1h"]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:8765/login/once?token=")
    assert main(["console", "login-link", "ghost"]) == 2


def test_serve_refuses_without_owners_and_with_the_dev_key_off_loopback(env, monkeypatch, capsys) -> None:
    """No owner to sign in, or the development key on a public address: exit 2 with one line."""
    assert main(["console", "serve"]) == 2
    assert "add-owner" in capsys.readouterr().err
    add_owner(monkeypatch, capsys)
    assert main(["console", "serve", "--host", "0.0.0.0"]) == 2  # noqa: S104 - the refused case
    err = capsys.readouterr().err
    assert "off loopback: refusing to start" in err
    assert "Traceback" not in err


def test_serve_with_clickhouse_unreachable_exits_3(env, monkeypatch, capsys) -> None:
    """A ClickHouse server that does not answer is one line and exit 3, before listening."""
    add_owner(monkeypatch, capsys)
    monkeypatch.setenv("TW_CLICKHOUSE_DSN", f"http://default:secret@127.0.0.1:{free_port()}/default")
    assert main(["console", "serve", "--port", str(free_port())]) == 3
    err = errors(capsys.readouterr().err)
    assert len(err) == 1, err
    assert "did not answer" in err[0]
    assert "secret" not in err[0], "no password in the message"
