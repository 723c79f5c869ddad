"""A single-node Apache Kafka (KRaft) broker on 127.0.0.1, started from Maven Central jars.

The jars are resolved once into `<cache_dir>/kafka-<version>/libs` with
`mvn dependency:copy-dependencies` over a small generated pom; later starts reuse them. The
broker's log dir is formatted on first start. The process runs detached (its own session), its
pid in `<kafka_dir>/broker.pid`, so `tenantwatch stack down` from another shell can stop it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.devstack.process import DetachedProcess

__all__ = ["KafkaBroker", "StackError", "port_open", "resolve_jars"]

_LOG4J_VERSION = "2.24.3"
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tenantwatch.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{l}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{l}</version></dependency>
  </dependencies>
</project>
"""
_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
"""
_STARTED = "Kafka Server started"


class StackError(RuntimeError):
    """A local-stack part could not be installed, started or stopped; the message says why."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_jars(cache_dir: Path, version: str) -> Path:
    """Return the folder of broker jars for `version`, fetching them with Maven once."""
    home = cache_dir / f"kafka-{version}"
    libs = home / "libs"
    done = home / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed once to fetch the Kafka broker jars; install it")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(v=version, l=_LOG4J_VERSION))
    tmp = home / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise StackError(f"mvn could not resolve Kafka {version}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    done.write_text(version)
    return libs


@dataclass
class KafkaBroker:
    """One KRaft broker+controller. `start()` blocks until it accepts connections.

    With `sasl_port`, clients may also connect there with SASL_PLAINTEXT and SCRAM-SHA-512 as
    one of `scram_users` (name → password, written when the log dir is formatted): the layout
    of docker-compose.yml, whose PLAINTEXT listener stays on loopback for the broker itself.
    """

    cache_dir: Path
    work_dir: Path
    version: str = "4.1.1"
    port: int = 19092
    controller_port: int = 19093
    partitions: int = 4
    heap: str = "1g"
    sasl_port: int | None = None
    scram_users: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> DetachedProcess:
        return DetachedProcess(self.work_dir / "broker.pid", self.work_dir / "stdout.log")

    @property
    def log_file(self) -> Path:
        return self.work_dir / "server.log"

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise StackError("Java 17+ is needed to run the Kafka broker; install a JDK")
        return java

    def _sasl_config(self) -> list[str]:
        if self.sasl_port is None:
            return []
        return [
            "inter.broker.listener.name=PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        logs = (self.work_dir / "logs").resolve()
        props = self.work_dir / "server.properties"
        sasl = f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}" if self.sasl_port is not None else ""
        props.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}{sasl}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}{sasl}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
                *self._sasl_config(),
                f"log.dirs={logs}",
                f"num.partitions={self.partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "message.max.bytes=10485760",
                "log.retention.hours=168",
                "",
            ])
        )
        (self.work_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file.resolve()))
        return props

    def _format(self, classpath: str, props: Path) -> None:
        if (self.work_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        cmd = [self._java(), "-cp", classpath, "kafka.tools.StorageTool", "format",
               "-t", cluster_id, "-c", str(props)]
        for name, password in self.scram_users.items():  # SCRAM credentials live in the KRaft metadata log
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise StackError(f"formatting the KRaft log dir failed:\n{proc.stdout}{proc.stderr}")

    def running_pid(self) -> int | None:
        return self.process.pid()

    def start(self, timeout: float = 90.0) -> None:
        if self.running_pid() is not None and port_open("127.0.0.1", self.port):
            return
        if port_open("127.0.0.1", self.port):
            raise StackError(f"port {self.port} is taken by another process; set TW_BROKER to a free port")
        libs = resolve_jars(self.cache_dir, self.version)
        classpath = f"{libs.resolve()}/*"
        props = self._write_config()
        self._format(classpath, props)
        self.log_file.unlink(missing_ok=True)
        cmd = [self._java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={(self.work_dir / 'log4j2.properties').resolve()}",
               "-cp", classpath, "kafka.Kafka", str(props.resolve())]
        (self.work_dir / "stdout.log").unlink(missing_ok=True)
        proc = self.process.start(cmd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.work_dir / "stdout.log").read_text(errors="replace")[-3000:]
                raise StackError(f"Kafka exited with code {proc.returncode} while starting:\n{tail}")
            if self._started() and port_open("127.0.0.1", self.port):
                self._await_group_coordinator(deadline)
                return
            time.sleep(0.2)
        self.stop()
        raise StackError(f"Kafka did not start within {timeout:.0f}s; see {self.log_file}")

    def _await_group_coordinator(self, deadline: float) -> None:
        """Wait until consumer groups can be coordinated (`__consumer_offsets` exists and leads).

        A fresh broker creates that topic on the first group request and answers "group
        coordinator not available" meanwhile; clients that met it first were seen limping for
        minutes (a ClickHouse writer inserted a tenth of its rows in 180 s).
        """
        from kafka.errors import KafkaError

        from pipeline.adapters.kafka_clients import SafeAdminClient

        admin = SafeAdminClient(bootstrap_servers=self.bootstrap, client_id="tw-stack-warmup")
        try:
            while True:
                try:
                    admin.list_group_offsets({"tw-stack-warmup": None})
                    return
                except KafkaError as exc:
                    if not exc.retriable or time.monotonic() > deadline:
                        raise StackError(f"Kafka's group coordinator did not come up: {exc!r}") from exc
                    time.sleep(0.2)
        finally:
            admin.close()

    def _started(self) -> bool:
        try:
            return _STARTED in self.log_file.read_text(errors="replace")
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout`). True if one was running."""
        return self.process.stop(timeout)

    def kill(self) -> None:
        """Kill without a clean shutdown (for crash tests)."""
        self.process.kill()
