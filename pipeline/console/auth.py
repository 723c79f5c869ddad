"""The console's authentication decisions, pure (no I/O; `now` is passed in).

- passwords: scrypt with a random salt, compared in constant time;
- sessions: random tokens that expire after `idle_s` without use or `max_s` after login;
- CSRF: a random token per session (per login form: a double-submit cookie), constant-time;
- login throttling: at most `max_failures` failed logins per key (client address, owner
  name) within `window_s`; then refused until the oldest failure leaves the window;
- redirects: only to a path of this site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "Session", "SessionStore", "hash_password", "safe_next", "tokens_match",
           "verify_password"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_MAXMEM = 64 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash`: what the owner store keeps instead of the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=_MAXMEM, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` string (False for any malformed one)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def tokens_match(expected: str | None, submitted: str | None) -> bool:
    """Constant-time equality of two tokens; a missing or empty one never matches."""
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


@dataclass
class Session:
    token: str
    owner: str
    csrf: str
    created: float
    last_seen: float


@dataclass
class SessionStore:
    """Live sessions by token. A session ends `idle_s` after its last use or `max_s` after login."""

    idle_s: float = 1800.0
    max_s: float = 12 * 3600.0
    max_sessions: int = 1000
    _sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def create(self, owner: str, now: float) -> Session:
        self._purge(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)  # the oldest login goes first
        session = Session(secrets.token_urlsafe(32), owner, secrets.token_urlsafe(32), now, now)
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None, now: float) -> Session | None:
        """The live session of `token` (its use extends the idle deadline), or None."""
        session = self._sessions.get(token or "")
        if session is None:
            return None
        if self.expired(session, now):
            del self._sessions[session.token]
            return None
        session.last_seen = now
        return session

    def expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen >= self.idle_s or now - session.created >= self.max_s

    def drop(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)

    def _purge(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if self.expired(s, now)]:
            del self._sessions[token]

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class LoginThrottle:
    """Failed logins per key in a sliding window; a key with `max_failures` of them waits."""

    max_failures: int = 5
    window_s: float = 300.0
    max_keys: int = 10_000
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - now)

    def failed(self, key: str, now: float) -> None:
        times = self._failures.setdefault(key, deque())
        self._failures.move_to_end(key)
        times.append(now)
        while len(times) > self.max_failures:
            times.popleft()
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def safe_next(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 0x20 for c in target):
        return default
    return target
