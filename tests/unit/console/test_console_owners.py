"""The owner store (a real file) and the console's start-up check of where it listens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.console import totp
from pipeline.console.owners import OwnerStore, OwnerStoreError
from pipeline.ops.startup_checks import console_bind_verdict
from pipeline.settings import Settings

NOW = 1_800_000_000.0
PASSWORD = "correct horse battery"  # noqa: S105 - a test owner's


def test_owner_signs_in_with_password_and_code_once_per_step(tmp_path: Path) -> None:
    """The file keeps no password; a code is good once; wrong passwords and names fail."""
    store = OwnerStore(tmp_path / "owners.json")
    secret = store.add("alice", PASSWORD).totp_secret
    assert PASSWORD not in store.path.read_text()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    code = totp.totp(secret, NOW)
    assert not store.check_login("alice", PASSWORD.upper(), code, NOW)
    assert not store.check_login("bob", PASSWORD, code, NOW)
    assert store.check_login("alice", PASSWORD, code, NOW)
    assert not store.check_login("alice", PASSWORD, code, NOW), "the same code twice"
    assert store.check_login("alice", PASSWORD, totp.totp(secret, NOW + 30), NOW + 30)


def test_bad_names_passwords_and_duplicates_are_refused(tmp_path: Path) -> None:
    """Names must fit the audit log's actor; passwords need 10 characters; no silent overwrite."""
    store = OwnerStore(tmp_path / "owners.json")
    store.add("alice", PASSWORD)
    for name, password, reason in (("a b", PASSWORD, "owner name"), ("bob", "short", "at least 10"),
                                   ("alice", PASSWORD, "exists")):
        with pytest.raises(OwnerStoreError, match=reason):
            store.add(name, password)
    store.add("alice", PASSWORD + "!", replace=True)
    assert store.names() == ["alice"]
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(OwnerStoreError, match="not an owner store"):
        OwnerStore(tmp_path / "junk.json").names()


def test_one_time_login_is_spent_on_use_and_expires(tmp_path: Path) -> None:
    """A one-time token signs its owner in once, before its expiry only."""
    store = OwnerStore(tmp_path / "owners.json")
    store.add("demo", PASSWORD)
    token = store.issue_one_time("demo", NOW, ttl_s=60)
    assert token not in store.path.read_text(), "only its hash is kept"
    assert store.redeem_one_time("nope", NOW) is None
    assert store.redeem_one_time(token, NOW + 1) == "demo"
    assert store.redeem_one_time(token, NOW + 2) is None
    late = store.issue_one_time("demo", NOW, ttl_s=60)
    assert store.redeem_one_time(late, NOW + 61) is None
    with pytest.raises(OwnerStoreError):
        store.issue_one_time("ghost", NOW)


@pytest.mark.parametrize(("host", "key", "refuse"), [
    ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False),
    ("0.0.0.0", None, True), ("192.0.2.1", None, True),  # noqa: S104 - the case under test
    ("0.0.0.0", "k" * 48, False),  # noqa: S104 - a real key may listen anywhere
])
def test_console_refuses_the_dev_key_off_loopback(host: str, key: str | None, refuse: bool) -> None:
    """Off loopback the console signs for whoever reaches it: never with a key anyone can read."""
    settings = Settings(**({"signing_key": key} if key else {}), allow_dev_key=True)
    verdict = console_bind_verdict(settings, host)
    assert verdict.refuse is refuse
    assert (verdict.warning is not None) is refuse
