"""The Envoy rate-limit service (Go, ``edge/rls/``): built once with ``go build``, started from settings.

``binary(cache_dir)`` builds ``tenantwatch-rls`` into ``<cache_dir>/rls/`` under a name keyed
by the hash of its sources (go.mod, go.sum, *.go; ``package="./cmd/rlsload"`` builds the
benchmark's load client the same way), so a changed source builds anew and an
unchanged one never does; builds racing each other each write their own temporary file and
rename it into place. Modules come from the Go module proxy into the usual module cache
(``~/go/pkg/mod``), ``-mod=mod`` against the committed ``go.sum``. ``command(settings, ...)``
is the argument list and environment that start it (Kafka security from
:func:`~pipeline.adapters.kafka_config.client_kwargs`, the one home of it; the password goes
through the environment, not the command line).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.adapters.kafka_config import client_kwargs
from pipeline.settings import Settings

__all__ = ["SOURCE", "RlsBuildError", "binary", "command", "go_tool"]

SOURCE = Path(__file__).resolve().parents[2] / "edge" / "rls"
_GO_FALLBACK = Path("/usr/local/go/bin/go")


class RlsBuildError(RuntimeError):
    """The service could not be built (Go missing, or the build failed); the message is one line."""


def go_tool() -> str | None:
    """The ``go`` command: on PATH, else the standard install location; None if there is none."""
    found = shutil.which("go")
    if found:
        return found
    return str(_GO_FALLBACK) if _GO_FALLBACK.exists() else None


def _sources(src: Path, package: str) -> list[Path]:
    files = [*src.glob("go.*"), *(src / package).glob("*.go")]
    return sorted(p for p in files if p.name in ("go.mod", "go.sum") or p.suffix == ".go")


def binary(cache_dir: Path, src: Path = SOURCE, package: str = ".", name: str = "tenantwatch-rls") -> Path:
    """The built program ``package`` of the module in ``src`` (default: the service): built now unless it already is."""
    digest = hashlib.sha256()
    for p in _sources(src, package):
        digest.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    out = cache_dir / "rls" / f"{name}-{digest.hexdigest()[:16]}"
    if out.exists():
        return out
    go = go_tool()
    if go is None:
        raise RlsBuildError("the rate-limit service is written in Go and `go` was not found: install Go "
                            "(1.26 or newer, https://go.dev/doc/install) or put it on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0"}
    done = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), package], cwd=src, env=env,  # noqa: S603
                          capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RlsBuildError(f"go build of {src} failed: {last}")
    tmp.replace(out)
    for old in out.parent.glob(f"{name}-*"):  # builds of earlier sources (a running one keeps its inode)
        if old != out and not old.name.endswith(".partial"):
            old.unlink(missing_ok=True)
    return out


def command(
    settings: Settings, exe: Path, *, listen: str, tenant_key: str = "tenant", address_key: str = "remote_address",
    wait_s: float = 30.0,
) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment that start the service ``exe`` for ``settings`` (ValueError: bad Kafka settings)."""
    kw = client_kwargs(settings, "kafka-python")
    argv = [str(exe), "-brokers", settings.broker, "-prefix", settings.topic_prefix, "-listen", listen,
            "-tenant-key", tenant_key, "-address-key", address_key, "-wait", str(wait_s),
            "-security-protocol", kw["security_protocol"]]
    env = {k: v for k, v in os.environ.items() if k not in ("TW_KAFKA_USERNAME", "TW_KAFKA_PASSWORD")}
    if "sasl_mechanism" in kw:
        argv += ["-sasl-mechanism", kw["sasl_mechanism"]]
        env.update(TW_KAFKA_USERNAME=kw["sasl_plain_username"], TW_KAFKA_PASSWORD=kw["sasl_plain_password"])
    if "ssl_cafile" in kw:
        argv += ["-ca-file", kw["ssl_cafile"]]
    return argv, env
