"""Assembling and serving the console: its reader, owner store, command signer and HTTP server."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from pipeline.console.actions import ActionPlan
from pipeline.console.owners import OwnerStore
from pipeline.console.reads import Reader, open_reader
from pipeline.console.web import ConsoleConfig, Verdict, build_app
from pipeline.settings import Settings

__all__ = ["console_url", "make_submit", "owner_store", "serve", "tls_context"]

log = logging.getLogger(__name__)


def owner_store(settings: Settings) -> OwnerStore:
    return OwnerStore(settings.data_dir / "console" / "owners.json")


def console_url(host: str, port: int, tls: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def make_submit(settings: Settings, wait_s: float) -> Callable[[ActionPlan, str], list[Verdict]]:
    """Sign each of a plan's commands as `owner`, send it, and wait for its audit verdict."""
    from pydantic import ValidationError

    from pipeline.admin import build_command, send_command

    def submit(plan: ActionPlan, owner: str) -> list[Verdict]:
        verdicts = []
        for key, params in plan.commands:
            try:
                command = build_command(settings, action=plan.action, tenant=key, params=params, actor=owner,
                                        reason=plan.reason)
            except (ValidationError, ValueError) as exc:
                verdicts.append(Verdict(key, "", None, f"not sent: invalid command ({str(exc).splitlines()[0]})"))
                continue
            try:
                audit = send_command(settings, command, wait_s=wait_s)
            except Exception as exc:
                if type(exc).__module__.split(".")[0] != "kafka":
                    raise
                verdicts.append(Verdict(key, command.nonce, None,
                                        f"not sent: Kafka at {settings.broker} did not answer ({exc})"))
                continue
            if audit is None:
                verdicts.append(Verdict(key, command.nonce, None,
                                        f"sent, but no worker answered within {wait_s:g} s"))
            else:
                verdicts.append(Verdict(key, command.nonce, audit.outcome, audit.reason))
        return verdicts

    return submit


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def serve(settings: Settings, host: str, port: int, *, reader: Reader | None = None,
          tls: ssl.SSLContext | None = None, ready: Callable[[str], None] | None = None) -> None:
    """Serve the console until interrupted (SIGINT/SIGTERM end aiohttp's loop)."""
    from aiohttp import web

    from pipeline.cli.trials import keys_per_partition
    from pipeline.console.auth import SessionStore

    config = ConsoleConfig(reader=reader or open_reader(settings), owners=owner_store(settings),
                           submit=make_submit(settings, settings.console_wait_s),
                           partition_keys=keys_per_partition(settings.partitions), secure_cookies=tls is not None,
                           sessions=SessionStore(idle_s=settings.console_session_idle_s,
                                                 max_s=settings.console_session_max_s))
    app = build_app(config)
    url = console_url(host, port, tls is not None)

    async def announce(_: web.Application) -> None:
        if ready is not None:
            ready(url)

    app.on_startup.append(announce)
    web.run_app(app, host=host, port=port, ssl_context=tls, print=None, access_log=None,
                handle_signals=True, loop=asyncio.new_event_loop())
