"""`tenantwatch stack up|down|status`: the local Kafka broker, the SMTP sink, the chDB dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.settings import Settings
from pipeline.stack.kafka import KafkaBroker, StackError, port_open

__all__ = ["LocalStack"]


@dataclass
class _Detached:
    """A helper process of ours, started in its own session, tracked by a pid file."""

    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, cmd: list[str]) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker = KafkaBroker(
            cache_dir=settings.cache_dir,
            work_dir=settings.kafka_dir,
            version=settings.kafka_version,
            port=settings.broker_port,
            controller_port=settings.kafka_controller_port,
            partitions=settings.partitions,
        )
        self.smtp = _Detached(settings.data_dir / "smtp.pid", settings.data_dir / "smtp.log")

    def up(self, timeout: float = 90.0) -> dict[str, Any]:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker.start(timeout=timeout)
        if self.smtp.pid() is None:
            if port_open(s.smtp_host, s.smtp_port):
                raise StackError(f"SMTP port {s.smtp_port} is taken; set TW_SMTP_PORT to a free port")
            self.smtp.start([sys.executable, "-m", "pipeline.smtp_sink", "--host", s.smtp_host,
                             "--port", str(s.smtp_port), "--dir", str(s.mail_dir.resolve())])
            deadline = time.monotonic() + 20
            while not port_open(s.smtp_host, s.smtp_port):
                if time.monotonic() > deadline or self.smtp.pid() is None:
                    raise StackError(f"SMTP sink did not start; see {self.smtp.log_file}")
                time.sleep(0.05)
        from pipeline.kafka_admin import ensure_topics

        ensure_topics(s)
        return self.status()

    def down(self) -> dict[str, bool]:
        return {"smtp": self.smtp.stop(), "kafka": self.broker.stop()}

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "kafka": {"bootstrap": s.broker, "pid": self.broker.running_pid(),
                      "accepting": port_open("127.0.0.1", s.broker_port)},
            "smtp": {"port": s.smtp_port, "pid": self.smtp.pid(), "mail_dir": str(s.mail_dir)},
            "clickhouse": {"dsn": s.dsn},
        }
