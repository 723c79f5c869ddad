"""`tenantwatch demo`: the whole pipeline on synthetic traffic, end to end, with a summary.

It runs in `<data_dir>/demo` (reset at every run, so runs do not pile up), starts the local
stack, loads the owner's history (a backfill of metric points over the `--backfill-days`
before the preset, `pipeline.devstack.backfill`: the anomaly worker seeds its baselines from
it through the writer's read API, so the live days are judged at once), starts a processing
worker and the ClickHouse writer as separate processes, publishes the
generator's preset through the SDK (plus a few malformed records, to show the dead-letter
path), shows live progress, waits until every consumer group
has caught up, stops the processes, prints what landed in ClickHouse and where the mails
went, writes the dashboards' panels as a static report (`<data_dir>/demo/report.html`), and
stops the stack (unless --keep-stack).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.devstack.anomaly_eval import BACKFILL_DAYS, DEMO_SEED
from pipeline.settings import Settings

__all__ = ["DemoStalled", "demo_settings", "run_demo", "start_pipeline", "stop_pipeline"]

_SUMMARY_SQL: list[tuple[str, str]] = [
    ("requests", "SELECT count() FROM requests FINAL"),
    ("billing events", "SELECT count() FROM billing FINAL"),
    ("error events", "SELECT count() FROM errors FINAL"),
    ("usage snapshots", "SELECT count() FROM usage FINAL"),
    ("dead letters", "SELECT count() FROM dead_letters FINAL"),
    ("audit log", "SELECT count() FROM audit_log FINAL"),
]
# Capability tables: counted when the table exists (capabilities land one by one).
_OPTIONAL_TABLES = [
    "rl_decisions", "rl_violations", "rl_bans", "rl_rollups", "metric_points", "anomalies", "baselines",
    "trial_states", "tenant_commands", "notifications", "deliveries",
]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[f"TW_{name.upper()}"] = str(plain)
    return env


def _status(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folder = settings.data_dir / "status"
    for path in folder.glob("*.json") if folder.exists() else ():
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def _lag(settings: Settings, group: str, topics: list[str]) -> int | None:
    """Records `group` has yet to commit on `topics`; None while the broker cannot tell yet
    (e.g. the group coordinator is still being elected)."""
    from kafka.errors import KafkaError

    from pipeline.adapters.kafka_admin import committed_offsets, end_offsets

    try:
        ends = end_offsets(settings.broker, topics)
        done = committed_offsets(settings.broker, group)
    except KafkaError:
        return None
    return sum(max(0, end - done.get(k, 0)) for k, end in ends.items())


def _progress_table(settings: Settings, published: int, started: float) -> Any:
    from rich.table import Table

    status = _status(settings)
    table = Table(title=f"tenantwatch demo — {time.monotonic() - started:5.0f}s", show_header=True)
    table.add_column("stage")
    table.add_column("figures", overflow="fold")
    elapsed = max(1e-9, time.monotonic() - started)
    table.add_row("generator → Kafka", f"{published:,} events ({published / elapsed:,.0f}/s)")
    for name, s in sorted(status.items()):
        if name.startswith("worker"):
            events = sum(s.get("events", {}).values())
            extra = ", ".join(f"{k}: {v}" for k, v in (s.get("extra") or {}).items())
            table.add_row(name, f"{events:,} events; dead letters {sum(s.get('dead_letters', {}).values())}; {extra}")
        elif name == "writer":
            rows = s.get("rows", {})
            table.add_row("writer → ClickHouse", f"{sum(rows.values()):,} rows; buffered {s.get('buffered', 0):,}; "
                          + ", ".join(f"{k} {v:,}" for k, v in sorted(rows.items())))
    return table


class _Publisher(threading.Thread):
    """Publishes the generator's records through the SDK in the background."""

    def __init__(self, settings: Settings, config: Any):
        super().__init__(daemon=True)
        self.settings = settings
        self.config = config
        self.published = 0
        self.failure: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        from pipeline.devstack.generator import iter_records
        from pipeline.sdk import Publisher

        try:
            with Publisher(self.settings.broker, prefix=self.settings.topic_prefix) as pub:
                for record in iter_records(self.config):
                    pub.publish(record)
                    self.published += 1
                _send_malformed(self.settings)
        except BaseException as exc:  # re-raised by the main thread with the progress so far
            self.failure = exc
        finally:
            self.done.set()


_MALFORMED = [
    b"not json at all",
    b'{"kind": "request", "event_id": "bad-1", "ts": "yesterday"}',
    b'[{"kind": "request", "event_id": "bad-2", "ts": "2026-01-05T00:00:00Z", "tenant_id": "acme", '
    b'"ip": "999.1.1.1", "method": "GET", "path": "/", "status": 200, "latency_ms": 1}]',
    b"\xff\xfe\x00\x01",
]


def _send_malformed(settings: Settings) -> None:
    """A few records as a buggy upstream would send them: they must end in the dead-letter table."""
    from kafka import KafkaProducer

    from pipeline.runtime.topics import Topic, topic_name

    producer = KafkaProducer(bootstrap_servers=settings.broker)
    for value in _MALFORMED:
        producer.send(topic_name(settings.topic_prefix, Topic.REQUESTS), value=value)
    producer.flush()
    producer.close()


def start_pipeline(settings: Settings, logs: Path) -> list[subprocess.Popen[bytes]]:
    """A ClickHouse writer and a processing worker for `settings`, as subprocesses logging to `logs`.

    Each in a session of its own: a Ctrl-C at the terminal reaches only the demo, which stops them
    in order (`stop_pipeline`); otherwise they could die first and the demo would report "a
    pipeline process exited early" instead of an interruption.
    """
    procs = []
    for role in ("writer", "worker"):
        with open(logs / f"{role}.log", "wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "pipeline.cli", role],  # noqa: S603
                                          env=_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def stop_pipeline(procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """SIGTERM each process, SIGKILL what has not ended after `timeout` (or at a second Ctrl-C)."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            p.kill()
            p.wait(timeout=10)


class DemoStalled(RuntimeError):
    """The pipeline made no progress for too long; the message says where to look."""


def _follow(console: Any, settings: Settings, procs: list[subprocess.Popen[bytes]], pub: _Publisher,
            logs: Path, *, stall_s: float = 180.0) -> None:
    """Show progress until publishing is done and every consumer group has caught up.

    Fails with `DemoStalled` when, after publishing, the work left (records not yet committed
    by the worker and the writer) has not shrunk for `stall_s` seconds, rather than waiting
    for ever.
    """
    from rich.live import Live

    from pipeline.runtime.topics import INPUT_TOPICS, TOPICS, topic_name

    started = time.monotonic()
    worker_topics = [topic_name(settings.topic_prefix, t) for t in INPUT_TOPICS]
    all_topics = [topic_name(settings.topic_prefix, t) for t in TOPICS]
    quiet = 0
    best: int | None = None
    best_at = time.monotonic()
    with Live(_progress_table(settings, 0, started), console=console, refresh_per_second=2) as live:
        while quiet < 3:
            time.sleep(1.0)
            live.update(_progress_table(settings, pub.published, started))
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a pipeline process exited early (code {p.returncode}); see {logs}")
            if pub.failure is not None:
                raise pub.failure
            if not pub.done.is_set():
                best_at = time.monotonic()
                continue
            lags = (_lag(settings, settings.app_id, worker_topics),
                    _lag(settings, f"{settings.app_id}-writer", all_topics))
            quiet = quiet + 1 if lags == (0, 0) else 0
            left = None if None in lags else sum(x for x in lags if x is not None)
            if left is not None and (best is None or left < best):
                best, best_at = left, time.monotonic()
            elif time.monotonic() - best_at > stall_s:
                raise DemoStalled(
                    f"no progress for {stall_s:.0f}s with {best if best is not None else 'an unknown number of'} "
                    f"records left (worker lag {lags[0]}, writer lag {lags[1]}); see the logs in {logs}")
    console.print(f"published {pub.published:,} events in {time.monotonic() - started:.0f}s; all stages caught up")


def demo_settings(base: Settings) -> Settings:
    """The demo's settings: its own data dir under `base`'s, the embedded ClickHouse there."""
    return Settings(**{**base.model_dump(), "data_dir": base.data_dir / "demo", "clickhouse_dsn": None})


def _load_history(console: Any, settings: Settings, config: Any, days: int) -> None:
    """The backfill, in a child process: chDB's data path must be free when the writer starts."""
    console.print(f"loading the owner's history: a backfill of {days} days of metric points before the preset"
                  " (same tenants, ordinary traffic, no incidents)…")
    done = subprocess.run([sys.executable, "-m", "pipeline.devstack.backfill", "--days", str(days)],  # noqa: S603
                          input=config.model_dump_json().encode(), env=_env(settings), capture_output=True,
                          check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the history backfill failed: {tail[0]}")
    console.print(f"history: {int(done.stdout.split()[-1]):,} metric points backfilled; anomaly streams seed from"
                  " them, the live days are scored")


def _await_read_api(settings: Settings, procs: list[subprocess.Popen[bytes]], timeout_s: float = 120.0) -> None:
    """Until the writer serves its read API (new anomaly streams seed through it), or it ended."""
    from pipeline.adapters.clickhouse.read_api import announcement_path, read_announcement

    deadline = time.monotonic() + timeout_s
    while read_announcement(announcement_path(settings)) is None and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return  # `_follow` reports the process that ended
        time.sleep(0.2)


def run_demo(base: Settings, preset: str = "demo", days: int | None = None, seed: int = DEMO_SEED, *,
             keep_stack: bool = False, backfill_days: int = BACKFILL_DAYS) -> int:
    """Run the demo; returns the exit code (130 when interrupted). Whatever ends it (done,
    Ctrl-C, SIGTERM, an error), the worker and writer are stopped, and so is the local stack
    unless `keep_stack`."""
    from rich.console import Console

    from pipeline.adapters.kafka_admin import ensure_topics
    from pipeline.devstack.generator import preset as load_preset
    from pipeline.devstack.manager import LocalStack

    console = Console()
    settings = demo_settings(base)
    stack = LocalStack(settings)
    stack.down()
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    overrides: dict[str, Any] = {"seed": seed} | ({"days": days} if days is not None else {})
    config = load_preset(preset).model_copy(update=overrides)
    console.print(f"[bold]tenantwatch demo[/]: preset {preset!r}, {config.days} simulated days, seed {seed}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C too, explicitly: a process started from a background job inherits SIGINT ignored,
    # and Python then leaves it so (a demo started that way ran on through a Ctrl-C).
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    try:
        console.print("starting the local stack (Kafka from Maven Central jars, SMTP sink)…")
        stack.up()
        ensure_topics(settings)
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if backfill_days > 0:
            _load_history(console, settings, config, backfill_days)
        procs = start_pipeline(settings, logs)
        try:
            _await_read_api(settings, procs)
            pub = _Publisher(settings, config)
            pub.start()
            _follow(console, settings, procs, pub, logs)
        finally:
            stop_pipeline(procs)
        _summary(console, settings)
        _console_invitation(console, settings)
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: stopping the worker, the writer and the stack")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if not keep_stack:
            stack.down()
            console.print("stack stopped (use --keep-stack to leave Kafka and the SMTP sink running)")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the demo as Ctrl-C does: through the clean-up


# Tenant-hours the anomaly agent closed (a request_volume point each) against the stored requests
# of those hours: the second-stage aggregation must make them equal. The backfilled history has
# metric points but no stored requests: only the live hours are compared.
_CLOSED_HOURS_SQL = """
SELECT count(), sum(m.value), sum(r.n), countIf(m.value != r.n)
FROM (SELECT tenant, ts, value FROM metric_points FINAL WHERE metric = 'request_volume'
      AND ts >= (SELECT toStartOfHour(min(ts)) FROM requests)) AS m
LEFT JOIN (SELECT tenant_id AS tenant, toDateTime64(toStartOfHour(ts), 3, 'UTC') AS ts, count() AS n
           FROM requests FINAL GROUP BY tenant, ts) AS r USING (tenant, ts)
"""


def _closed_hours_check(console: Any, client: Any) -> None:
    hours, volume, stored, differ = client.query(_CLOSED_HOURS_SQL).result_rows[0]
    verdict = "[green]equal[/]" if differ == 0 and int(volume or 0) == int(stored or 0) else f"[red]{differ} differ[/]"
    console.print(f"closed tenant-hours: {hours:,}; request_volume {int(volume or 0):,} vs stored requests "
                  f"{int(stored or 0):,}: {verdict}")


def _summary(console: Any, settings: Settings) -> None:
    from rich.table import Table

    from pipeline.adapters.clickhouse.client import connect

    client = connect(settings.dsn)
    existing = {r[0] for r in client.query("SHOW TABLES").result_rows}
    table = Table(title=f"ClickHouse ({settings.dsn})")
    table.add_column("what")
    table.add_column("rows", justify="right")
    for label, sql in _SUMMARY_SQL:
        table.add_row(label, f"{client.query(sql).result_rows[0][0]:,}")
    for name in _OPTIONAL_TABLES:
        if name in existing:
            count = client.query(f"SELECT count() FROM {name} FINAL").result_rows[0][0]  # noqa: S608 - fixed names
            table.add_row(name, f"{count:,}")
    console.print(table)
    _closed_hours_check(console, client)
    mails = sorted(Path(settings.mail_dir).glob("*.eml")) if settings.mail_dir.exists() else []
    console.print(f"mails received by the local SMTP sink: {len(mails)} in {settings.mail_dir.resolve()}")
    from dashboards.report import write_report

    report = settings.data_dir / "report.html"
    outcome = write_report(report, client)
    console.print(f"static report of the dashboards' panels: {report.resolve()} "
                  f"({outcome.panels} panels, {len(outcome.failed)} failed)")


def _console_invitation(console: Any, settings: Settings) -> None:
    """How to open the owner console on the demo's data, with a one-time login for the demo owner.

    The demo's writer has stopped (chDB admits one process per data path, and the summary read
    it); `tenantwatch console serve --demo --with-pipeline` starts the stack, a worker and a
    writer on the demo's data again, and the console reads through that writer.
    """
    import secrets

    from pipeline.console.server import console_url, owner_store

    store = owner_store(settings)
    store.add("demo", secrets.token_urlsafe(24), replace=True)  # the one-time link is the way in
    token = store.issue_one_time("demo", time.time())
    url = f"{console_url(settings.console_host, settings.console_port)}/login/once?token={token}"
    console.print("[bold]owner console[/] on this data: run")
    console.print("    tenantwatch console serve --demo --with-pipeline", soft_wrap=True)
    console.print(f"then open (one-time login for owner 'demo', valid 24 h): {url}", soft_wrap=True)
    console.print("(a lasting account: tenantwatch console add-owner NAME --demo)")
