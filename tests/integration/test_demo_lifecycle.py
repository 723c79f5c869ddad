"""`tenantwatch demo` cleans up after itself however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.devstack.kafka import port_open
from tests.conftest import ROOT, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_stops_every_process_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM mid-run leaves no broker, SMTP sink,
    worker or writer running, and the demo exits 130."""
    broker, smtp = free_port(), free_port()
    env = dict(os.environ, TW_DATA_DIR=str(tmp_path), TW_BROKER=f"127.0.0.1:{broker}",
               TW_KAFKA_CONTROLLER_PORT=str(free_port()), TW_SMTP_PORT=str(smtp))
    demo_dir = tmp_path / "demo"
    with open(tmp_path / "demo.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--preset", "tiny"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = demo_dir / "status"
        wait_for(lambda: status.exists() and any(status.glob("worker-*.json")) and (status / "writer.json").exists(),
                 timeout=180, what=lambda: "the demo's worker and writer running:\n"
                 + (tmp_path / "demo.out").read_text(errors="replace")[-2000:])
        pids = [int((demo_dir / "kafka" / "broker.pid").read_text()), int((demo_dir / "smtp.pid").read_text())]
        pids += [int(p.stem.split("-")[1]) for p in status.glob("worker-*.json")]
        assert all(alive(p) for p in pids)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # what a terminal does on Ctrl-C
        else:
            proc.send_signal(sig)
        code = proc.wait(timeout=120)
        assert code == 130, (tmp_path / "demo.out").read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not [p for p in pids if alive(p)]
    assert not port_open("127.0.0.1", broker)
    assert not port_open("127.0.0.1", smtp)
    assert "interrupted" in (tmp_path / "demo.out").read_text(errors="replace")
