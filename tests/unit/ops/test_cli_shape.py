"""The command line has one shape: noun then verb, help on every flag, `--version`, `--json` on
every command that reads, arguments checked before anything connects, one-line errors with
distinct exit codes when Kafka or ClickHouse is down (the real CLI, in a subprocess)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.cli._common import EXIT_CODES_HELP, Exit
from tests.conftest import ROOT, free_port

# Commands that read and print data: each has --json.
READS = [("ip", "top"), ("limits", "show"), ("anomalies", "list"), ("rules", "show"), ("trials", "stats"),
         ("trials", "list"), ("report",)]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command parser, with its path of names."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    return dict(commands(build_parser()))[path]


def test_every_command_and_flag_has_help() -> None:
    """Walks the whole parser: each subcommand has a help line, each option and argument a help text."""
    missing = []
    seen = 0
    for path, parser in commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{' '.join((*path, n))}: no help line" for n in action.choices if n not in helped]
            elif not isinstance(action, argparse._HelpAction):
                seen += 1
                if not (action.help or "").strip():
                    flag = "/".join(action.option_strings) or action.dest
                    missing.append(f"{' '.join(path) or 'tenantwatch'} {flag}")
    assert seen > 60
    assert missing == []


def test_verbs_are_subcommands_not_an_action_word() -> None:
    """No command takes its verb as a positional "action" with choices; ip, limits and tenant nest verbs."""
    for path, parser in commands(build_parser()):
        words = [a for a in parser._actions if not a.option_strings and a.choices and
                 not isinstance(a, argparse._SubParsersAction)]
        assert not [a.dest for a in words if a.dest in {"action", "verb"}], path
    for noun, verbs in {"ip": {"ban", "unban", "whitelist", "blacklist", "unlist", "top"},
                        "limits": {"set", "show"}, "tenant": {"enable", "disable", "shadow"},
                        "stack": {"up", "down", "status"}, "topics": {"create"}, "schemas": {"export"}}.items():
        assert {p[1] for p, _ in commands(build_parser()) if len(p) == 2 and p[0] == noun} == verbs


@pytest.mark.parametrize("argv", [
    ["ip", "top", "--duration", "1h"],
    ["ip", "ban", "203.0.113.9", "--tenant", "acme", "--since", "1h"],
    ["tenant", "enable", "--tenant", "acme", "--off"],
    ["limits", "show", "--tenant", "acme", "--per-hour", "5"],
])
def test_each_subcommand_takes_only_its_own_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A flag of a sibling command is a usage error (exit 2, on stderr), not silently ignored."""
    assert main(argv) == Exit.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert "unrecognized arguments" in err


@pytest.mark.parametrize("path", READS, ids=" ".join)
def test_every_reading_command_has_json(path: tuple[str, ...]) -> None:
    """--json on each command that reads and prints data."""
    assert "--json" in parser_at(path).format_help()


def test_version_and_exit_codes_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the installed version; `--help` lists every exit code."""
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tenantwatch {version('tenantwatch')}"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert EXIT_CODES_HELP in text
    assert [int(line.split()[0]) for line in EXIT_CODES_HELP.splitlines()[1:]] == [int(e) for e in Exit]


def cli(*argv: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, with Kafka and ClickHouse pointed at closed ports unless given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    base.update({"TW_BROKER": f"127.0.0.1:{free_port()}", "TW_CLICKHOUSE_DSN": f"http://127.0.0.1:{free_port()}",
                 **env})
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT, env=base, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The single error line (the development-key warning aside); no traceback, nothing on stdout."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "development signing key" not in ln]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(prefix), lines
    assert done.stdout == ""
    return lines[0]


@pytest.mark.parametrize(("argv", "says"), [
    (["ip", "ban", "999.1.1.1", "--tenant", "acme"], "'999.1.1.1' is not an IP address"),
    (["ip", "whitelist", "10.0.0.0/33", "--tenant", "acme"], "is not an IP address or CIDR range"),
    (["ip", "unban", "10.0.0.1", "--tenant", "no spaces"], "is not a tenant id"),
    (["ip", "ban", "--tenant", "acme"], "the following arguments are required: ip"),
    (["anomalies", "list", "--limit", "0"], "is not a whole number of at least 1"),
    (["trials", "run-expiry", "--at", "tomorrow"], "is not an ISO-8601 time"),
    (["report", "--from", "yesterday"], "is not an ISO-8601 time"),
])
def test_bad_arguments_are_refused_before_any_connection(argv: list[str], says: str) -> None:
    """Exit 2 with the reason on stderr, although Kafka and ClickHouse are unreachable: nothing was tried."""
    done = cli(*argv)
    assert done.returncode == Exit.USAGE, done.stderr
    assert says in done.stderr
    assert done.stdout == ""
    assert "did not answer" not in done.stderr


def test_publish_says_the_file_is_missing_before_asking_kafka() -> None:
    """`publish /nonexistent.jsonl` with Kafka down: the missing file, exit 2, not a Kafka timeout."""
    done = cli("publish", "/nonexistent.jsonl")
    assert done.returncode == Exit.USAGE
    assert one_line_error(done, "tenantwatch publish: ") == "tenantwatch publish: /nonexistent.jsonl: no such file"


@pytest.mark.parametrize("argv", [
    ["ip", "ban", "203.0.113.9", "--tenant", "acme"],
    ["anomalies", "ack", "an-1", "--tenant", "acme"],
    ["trials", "resend", "acme", "welcome"],
    ["publish", "-"],
])
def test_kafka_down_is_one_line_and_exit_3(argv: list[str]) -> None:
    """An admin command or `publish` with no broker listening: one line naming Kafka, exit 3."""
    done = cli(*argv, stdin="")
    assert done.returncode == Exit.UNREACHABLE, done.stderr
    assert "Kafka at 127.0.0.1:" in one_line_error(done, f"tenantwatch {argv[0]}")


@pytest.mark.parametrize("argv", [
    ["anomalies", "list"], ["trials", "stats"], ["trials", "list", "--json"], ["ip", "top"],
    ["limits", "show", "--tenant", "acme"], ["rules", "show"], ["report", "--out", "{tmp}/r.html"],
])
def test_clickhouse_down_is_one_line_and_exit_3(argv: list[str], tmp_path: Path) -> None:
    """A reading command with ClickHouse down (a DSN nothing listens on): one line, exit 3, no traceback."""
    done = cli(*(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert done.returncode == Exit.UNREACHABLE, done.stderr
    line = one_line_error(done, f"tenantwatch {' '.join(argv[:2]) if argv[0] != 'report' else 'report'}: ")
    assert "ClickHouse at http://127.0.0.1:" in line
    assert "did not answer" in line
    assert not (tmp_path / "r.html").exists()
