"""JSON Schema export of the event contracts, for upstream teams."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.commands import AdminCommand
from schemas.events import BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["EXPORTED", "export_json_schemas"]

EXPORTED: tuple[type[BaseModel], ...] = (RequestEvent, BillingEvent, ErrorEvent, UsageEvent, AdminCommand)


def export_json_schemas(directory: Path) -> list[Path]:
    """Write `<Model>.schema.json` for every exported model; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in EXPORTED:
        path = directory / f"{model.__name__}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
