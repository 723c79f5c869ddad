"""Benchmarks for trial automation and mail delivery (a script, not part of the test run).

    .venv/bin/python tests/bench/bench_trials.py --trials 1000000 --mails 2000

1. State memory and due-timer cost with N open trials in one TrialBook (one partition's worth
   when N is per partition): resident memory per trial, the cost of an `advance` with nothing due,
   and the cost per fired timer when a slice of trials comes due.
2. Mails per minute through aiosmtplib to a local aiosmtpd sink, with the kept-alive connection
   and, for comparison, with a new connection per mail.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.notify.message import build_message  # noqa: E402 - after the path set-up
from agents.notify.templates import TemplateRenderer  # noqa: E402 - after the path set-up
from agents.trials import DAY, TrialBook  # noqa: E402 - after the path set-up
from pipeline.adapters.smtp import SmtpMailer  # noqa: E402 - after the path set-up
from pipeline.devstack.smtp_sink import SmtpSink, free_port  # noqa: E402 - after the path set-up
from schemas.events import BillingEvent, BillingType  # noqa: E402 - after the path set-up
from schemas.notify import Notification  # noqa: E402 - after the path set-up

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_trials(n: int) -> None:
    gc.collect()
    before = rss_mb()
    book = TrialBook()
    t = time.perf_counter()
    for i in range(n):
        start = T0 + (i % 86_400) * 10.0  # starts spread over 10 days
        ev = BillingEvent(
            event_id=f"s{i}",
            ts=datetime.fromtimestamp(start, UTC),
            tenant_id=f"tenant-{i:07d}",
            type=BillingType.TRIAL_STARTED,
            plan="pro",
            trial_days=14,
            contact_email=f"owner{i}@example.com",
            contact_name="Ann Example",
            timezone="Europe/Berlin",
        )
        book.apply(ev)
    build_s = time.perf_counter() - t
    gc.collect()
    after = rss_mb()
    print(f"trials: {n:,} open, {len(book.index):,} timers; apply {build_s:.1f} s ({n / build_s:,.0f} events/s)")
    print(f"  memory: {after - before:,.0f} MiB RSS ({(after - before) * 2**20 / n:,.0f} B per trial incl. index)")
    one = next(iter(book.trials.values()))
    print(f"  one trial pickles to {len(pickle.dumps(one))} B (a Faust table value)")

    # Welcomes of the first day fire; then time moves on with nothing due.
    t = time.perf_counter()
    fired = len(book.advance(T0 + 0.5 * DAY).notifications)
    dt = time.perf_counter() - t
    print(f"  advance firing {fired:,} welcomes: {dt * 1e3:,.0f} ms ({dt / max(fired, 1) * 1e6:.1f} µs per timer)")
    reps = 10_000
    t = time.perf_counter()
    for k in range(reps):
        book.advance(T0 + 0.5 * DAY + k * 1e-3)
    dt = (time.perf_counter() - t) / reps
    print(f"  advance with nothing due: {dt * 1e6:.2f} µs (independent of {n:,} open trials)")
    t = time.perf_counter()
    scanned = sum(1 for tr in book.trials.values() if tr.started_at <= T0)
    dt_scan = time.perf_counter() - t
    print(f"  for scale, one full scan of all trials: {dt_scan * 1e3:,.0f} ms ({scanned} matched)")


async def bench_mail(n: int, folder: Path, port: int) -> None:
    renderer = TemplateRenderer()
    messages = []
    for i in range(n):
        note = Notification(
            id=f"bench{i}",
            kind="ban_notice",
            recipient=f"owner{i}@example.com",
            tenant_id="acme",
            ts=datetime.fromtimestamp(T0, UTC),
            variables={"tenant_id": "acme", "ip": "203.0.113.9", "reason": "abuse", "until": "13:00"},
        )
        messages.append(build_message(note, renderer.render(note.kind, note.variables), "tw <a@tw.local>"))
    size = len(messages[0].as_bytes())
    files = SmtpSink(folder, port=port)
    mailer = SmtpMailer("127.0.0.1", port)
    t = time.perf_counter()
    for m in messages:
        await mailer.send(m)
    await mailer.close()
    await files.await_count(n, within=120)
    dt = time.perf_counter() - t
    print(
        f"mail: {n:,} mails of {size:,} B over {mailer.connections} connection(s): {dt:.2f} s, "
        f"{n / dt * 60:,.0f} mails/min (until all are on disk)"
    )
    k = max(1, n // 5)
    fresh = SmtpMailer("127.0.0.1", port)
    t = time.perf_counter()
    for m in messages[:k]:
        await fresh.send(m)
        await fresh.close()  # no reuse: connect + EHLO + QUIT per mail
    dt = time.perf_counter() - t
    print(f"  without reuse ({k:,} mails, {fresh.connections} connections): {k / dt * 60:,.0f} mails/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--mails", type=int, default=2_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    if args.mails:
        with tempfile.TemporaryDirectory() as d:
            # The sink runs in its own process, as Mailpit or a relay would: no GIL shared with the client.
            port = free_port()
            sink = subprocess.Popen(
                [sys.executable, "-m", "pipeline.devstack.smtp_sink", "--port", str(port), "--dir", d],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            try:
                assert sink.stdout is not None
                sink.stdout.readline()  # "SMTP sink on ...": listening
                asyncio.run(bench_mail(args.mails, Path(d), port))
            finally:
                sink.terminate()
                sink.wait(timeout=10)
    if args.trials:
        bench_trials(args.trials)


if __name__ == "__main__":
    main()
