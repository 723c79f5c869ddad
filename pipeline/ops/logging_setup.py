"""Logging for tenantwatch processes: human-readable lines, or one JSON object per line.

JSON lines carry `ts`, `level`, `logger`, `message`, the exception if any, and the context
fields passed with `extra=` (`tenant_id`, `event_id`, `topic`, `partition`, ...), so a log
pipeline can filter one tenant's story:

    log.warning("event rejected", extra={"tenant_id": "acme", "event_id": "e-1", "reason": "bad ts"})
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "configure_logging"]

# Context fields first in every line where present; any other `extra=` key follows them.
CONTEXT_FIELDS = ("tenant_id", "event_id", "topic", "partition", "offset", "trial_id", "anomaly_id", "ip")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values that are not JSON types are written as text."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        for key in CONTEXT_FIELDS:
            if key in extras:
                out[key] = _plain(extras.pop(key))
        for key, value in sorted(extras.items()):
            out.setdefault(key, _plain(value))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(json: bool = False, level: int | str = logging.WARNING, stream: TextIO | None = None) -> None:
    """Replace the root handlers with one stream handler, text or JSON, at `level`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # kafka-python 3's I/O loop warns whenever one of its tasks held it over 100 ms, which a
    # producer sharing the GIL with a busy thread (the demo's generator, a CLI import) does
    # all the time: dozens of lines that say nothing about the data. Still shown with -v.
    if root.level > logging.INFO:
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
