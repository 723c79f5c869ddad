"""Owner accounts of the console: one JSON file (mode 0600) of hashed passwords and TOTP secrets.

    {"owners": {"alice": {"password": "scrypt$…", "totp_secret": "BASE32…", "last_step": 0,
                          "one_time": [{"hash": "<sha256 of the token>", "expires": 1.7e9}]}}}

A one-time login is a random token whose hash is kept with an expiry; it signs its owner in
once (the demo prints one). Writes go through a temporary file and a rename, under a lock:
one console process owns the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.console import totp
from pipeline.console.auth import hash_password, verify_password

__all__ = ["NAME_PATTERN", "OwnerStore", "OwnerStoreError"]

# The audit log's actor pattern (schemas.commands.AdminCommand.actor): the owner's name is the actor.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_MIN_PASSWORD = 10


class OwnerStoreError(ValueError):
    """A name, password or file the store refuses; the message says which and why."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewOwner:
    name: str
    totp_secret: str

    @property
    def provisioning_uri(self) -> str:
        return totp.provisioning_uri(self.totp_secret, self.name)


class OwnerStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    # -- file ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"owners": {}}
        except (OSError, ValueError) as exc:
            raise OwnerStoreError(f"{self.path}: unreadable owner store ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("owners"), dict):
            raise OwnerStoreError(f"{self.path}: not an owner store")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        tmp.replace(self.path)

    # -- accounts -----------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._load()["owners"])

    def add(self, name: str, password: str, *, replace: bool = False) -> NewOwner:
        """Create (or with `replace`, reset) an owner; returns the new TOTP secret to enrol."""
        if not NAME_PATTERN.fullmatch(name):
            raise OwnerStoreError(f"{name!r}: an owner name is 1-64 letters, digits or _ . @ -")
        if len(password) < _MIN_PASSWORD:
            raise OwnerStoreError(f"the password must have at least {_MIN_PASSWORD} characters")
        with self._lock:
            data = self._load()
            if name in data["owners"] and not replace:
                raise OwnerStoreError(f"owner {name!r} exists (use --replace to reset it)")
            secret = totp.new_secret()
            data["owners"][name] = {"password": hash_password(password), "totp_secret": secret, "last_step": -1,
                                    "one_time": []}
            self._save(data)
        return NewOwner(name, secret)

    def check_login(self, name: str, password: str, code: str, now: float) -> bool:
        """Password and TOTP code both right (a code's time step is then used up)."""
        with self._lock:
            data = self._load()
            owner = data["owners"].get(name)
            if owner is None:
                verify_password(password, _DUMMY_HASH)  # the same work whether or not the name exists
                return False
            if not verify_password(password, owner["password"]):
                return False
            step = totp.verify(owner["totp_secret"], code, now, after_step=int(owner.get("last_step", -1)))
            if step is None:
                return False
            owner["last_step"] = step
            self._save(data)
            return True

    def issue_one_time(self, name: str, now: float, ttl_s: float = 24 * 3600.0) -> str:
        """A token that signs `name` in once before `now + ttl_s`."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            data = self._load()
            owner = data["owners"].get(name)
            if owner is None:
                raise OwnerStoreError(f"no owner {name!r}")
            owner["one_time"] = [t for t in owner.get("one_time", []) if t["expires"] > now]
            owner["one_time"].append({"hash": _digest(token), "expires": now + ttl_s})
            self._save(data)
        return token

    def redeem_one_time(self, token: str, now: float) -> str | None:
        """The owner whose live one-time token this is (the token is then spent), or None."""
        wanted = _digest(token)
        with self._lock:
            data = self._load()
            for name, owner in data["owners"].items():
                tokens = owner.get("one_time", [])
                for t in tokens:
                    if secrets.compare_digest(t["hash"], wanted) and t["expires"] > now:
                        tokens.remove(t)
                        self._save(data)
                        return str(name)
        return None


_DUMMY_HASH = hash_password("not-an-owner", salt=b"\0" * 16)
