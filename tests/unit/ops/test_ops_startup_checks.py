"""The development signing key: warned of at the default level, refused off loopback (pure + the real CLI)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.ops.startup_checks import StartupVerdict, broker_is_loopback, signing_key_problem, startup_verdict
from pipeline.settings import DEV_SIGNING_KEY, Settings
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[3]
STRONG = secrets.token_urlsafe(48)
REMOTE = "10.255.255.1:9092"  # not routable: nothing here may get as far as connecting


@pytest.mark.parametrize(("key", "why"), [
    (DEV_SIGNING_KEY, "development"), ("change-me-before-production", "placeholder"), ("CHANGEME", "placeholder"),
    ("please-change-me-now-this-is-long-enough-0123456789", "placeholder"), ("x" * 31, "shorter than 32 bytes"),
    ("", "shorter"),
])
def test_weak_keys_are_named(key: str, why: str) -> None:
    """The development key, the compose file's old default, placeholders and short keys are all caught."""
    problem = signing_key_problem(key)
    assert problem is not None
    assert why in problem


def test_a_random_key_passes() -> None:
    """A 48-byte random key is fine."""
    assert signing_key_problem(STRONG) is None


@pytest.mark.parametrize(("broker", "loopback"), [
    ("127.0.0.1:19092", True), ("localhost:9092", True), ("[::1]:9092", True), ("127.0.0.2:9092,localhost:1", True),
    ("kafka:9092", False), ("10.0.0.5:9092", False), ("127.0.0.1:9092,10.0.0.5:9092", False), ("", False),
    ("kafka://127.0.0.1:9092", True),
])
def test_loopback_means_every_bootstrap_address(broker: str, loopback: bool) -> None:
    """One address off this machine (or a name that may resolve anywhere) is not loopback."""
    assert broker_is_loopback(broker) is loopback


def test_verdicts() -> None:
    """Weak key: warn on loopback, refuse elsewhere unless allowed; a strong key: nothing to say."""
    assert startup_verdict(Settings()).refuse is False
    assert startup_verdict(Settings()).warning is not None
    assert startup_verdict(Settings(broker=REMOTE)).refuse is True
    allowed = startup_verdict(Settings(broker=REMOTE, allow_dev_key=True))
    assert allowed.refuse is False
    assert allowed.warning is not None
    assert "TW_ALLOW_DEV_KEY=1" in allowed.warning
    assert startup_verdict(Settings(broker=REMOTE, signing_key=STRONG)) == StartupVerdict(None, refuse=False)


def _env(tmp_path: Path, **tw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_")}
    env.update({"TW_DATA_DIR": str(tmp_path), **tw})
    return env


@pytest.mark.parametrize(("command", "key"), [("worker", None), ("writer", "change-me-before-production"),
                                              ("ip", "short")])
def test_the_real_cli_refuses_a_weak_key_with_a_remote_broker(tmp_path: Path, command: str, key: str | None) -> None:
    """The worker, the writer and an admin command exit 2 with the reason, before touching the broker."""
    args = {"ip": ["ip", "ban", "1.2.3.4", "--tenant", "acme"]}.get(command, [command])
    env = _env(tmp_path, TW_BROKER=REMOTE, **({"TW_SIGNING_KEY": key} if key else {}))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to start" in done.stderr
    assert "TW_ALLOW_DEV_KEY=1" in done.stderr


@pytest.mark.parametrize(("broker", "extra", "expected"), [
    (REMOTE, {"TW_ALLOW_DEV_KEY": "1"}, "allowed by TW_ALLOW_DEV_KEY=1"),
    ("127.0.0.1:1", {}, "fine for the local stack only"),
])
def test_the_real_worker_warns_at_the_default_level(tmp_path: Path, broker: str, extra: dict[str, str],
                                                    expected: str) -> None:
    """Allowed explicitly, or on loopback, the worker starts, with a WARNING line about the key."""
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--capabilities", ""], cwd=ROOT,
                                env=_env(tmp_path, TW_BROKER=broker, **extra), stdout=out, stderr=subprocess.STDOUT)
    try:
        line = wait_for(lambda: next((ln for ln in log.read_text(errors="replace").splitlines()
                                      if "signing key" in ln), None), timeout=60, what="the key warning")
        assert "WARNING" in line
        assert expected in line
        assert proc.poll() is None, "the worker went on starting"
    finally:
        proc.kill()
        proc.wait(timeout=30)
