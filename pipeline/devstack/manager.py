"""`tenantwatch stack up|down|status`: the local Kafka broker, the SMTP sink, the chDB dir."""

from __future__ import annotations

import sys
import time
from typing import Any

from pipeline.devstack.kafka import KafkaBroker, StackError, port_open
from pipeline.devstack.process import DetachedProcess
from pipeline.settings import Settings

__all__ = ["LocalStack"]


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
        self.smtp = DetachedProcess(settings.data_dir / "smtp.pid", settings.data_dir / "smtp.log")

    def up(self, timeout: float = 90.0) -> dict[str, Any]:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker.start(timeout=timeout)
        if self.smtp.pid() is None:
            if port_open(s.smtp_host, s.smtp_port):
                raise StackError(f"SMTP port {s.smtp_port} is taken; set TW_SMTP_PORT to a free port")
            self.smtp.start([sys.executable, "-m", "pipeline.devstack.smtp_sink", "--host", s.smtp_host,
                             "--port", str(s.smtp_port), "--dir", str(s.mail_dir.resolve())])
            deadline = time.monotonic() + 20
            while not port_open(s.smtp_host, s.smtp_port):
                if time.monotonic() > deadline or self.smtp.pid() is None:
                    raise StackError(f"SMTP sink did not start; see {self.smtp.log_file}")
                time.sleep(0.05)
        from pipeline.adapters.kafka_admin import ensure_topics

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
