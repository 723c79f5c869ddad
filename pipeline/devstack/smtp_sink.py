"""A local SMTP sink: aiosmtpd on 127.0.0.1 that writes each received mail to `<dir>/<hash>.eml`.

The file name is a hash of the Message-ID, so a redelivered mail lands on the same file and
is counted in `duplicates` instead of showing up twice. Failure injection for tests:
`bounce` (recipients answered 550) and `defer(n)` (the next n DATA commands answered 451).

    python -m pipeline.devstack.smtp_sink --port 2525 --dir .tenantwatch/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from email import message_from_bytes
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["SmtpSink", "free_port", "main"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (aiosmtpd's controller cannot start on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.sink.bounce:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.sink._receive(bytes(envelope.content))


class SmtpSink:
    """Start/stop an aiosmtpd server that stores mail as files; wait for mail with a deadline."""

    def __init__(self, directory: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)
        self.bounce: set[str] = set()
        self.received = 0  # every accepted DATA, duplicates included
        self.duplicates: Counter[str] = Counter()  # Message-ID → extra copies received
        self._defer = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._controller is None:
            controller = Controller(_Handler(self), hostname=self.host, port=self.port, enable_SMTPUTF8=True)
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def defer(self, n: int) -> None:
        """Answer the next `n` DATA commands with 451 (a transient failure)."""
        with self._lock:
            self._defer = n

    def _receive(self, content: bytes) -> str:
        with self._lock:
            if self._defer > 0:
                self._defer -= 1
                return "451 4.3.0 try again later"
            headers = BytesHeaderParser(policy=default_policy).parsebytes(content)  # headers only: cheap
            mid = str(headers.get("Message-ID", "")) or hashlib.sha256(content).hexdigest()
            path = self.directory / f"{hashlib.sha256(mid.encode()).hexdigest()[:32]}.eml"
            self.received += 1
            if path.exists():
                self.duplicates[mid] += 1
            else:
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(content)
                os.replace(tmp, path)  # readers never see half a mail
        return "250 2.0.0 OK: queued"

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def messages(self) -> list[Any]:
        """Every stored mail, parsed (email.message.EmailMessage)."""
        return [message_from_bytes(p.read_bytes(), policy=default_policy) for p in self.files()]

    def wait_for(self, count: int, timeout: float = 10.0, poll: float = 0.02) -> list[Path]:
        """Block until at least `count` mails are stored; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(files := self.files()) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(files)} of {count} mails in {self.directory} after {timeout}s")
            time.sleep(poll)
        return files

    async def await_count(self, count: int, within: float = 10.0, poll: float = 0.02) -> list[Path]:
        """`wait_for` for coroutines: yields to the event loop while polling."""
        deadline = time.monotonic() + within
        while len(files := self.files()) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(files)} of {count} mails in {self.directory} after {within}s")
            await asyncio.sleep(poll)
        return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.devstack.smtp_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", type=Path, default=Path(".tenantwatch/mail"))
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SmtpSink(args.dir, args.port, args.host) as sink:
        print(f"SMTP sink on {sink.host}:{sink.port}, writing to {sink.directory}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
