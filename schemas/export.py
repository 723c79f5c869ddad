"""JSON Schema export of the event contracts, for upstream teams."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.commands import AdminCommand
from schemas.events import BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["EXPORTED", "STRICT_NOTE", "export_json_schemas"]

EXPORTED: tuple[type[BaseModel], ...] = (RequestEvent, BillingEvent, ErrorEvent, UsageEvent, AdminCommand)

# What JSON Schema cannot say by itself (its "integer" admits 200.0), as the decoders enforce it.
STRICT_NOTE = (
    "Validated strictly: a number is never a string (\"200\" is refused), a boolean is not an integer, "
    "an integer has no fraction part (200.0 is refused, although JSON Schema's \"integer\" admits it), "
    "and a timestamp is RFC 3339 text matching its pattern (an epoch number is refused). "
    "Unknown fields are refused."
)


def export_json_schemas(directory: Path) -> list[Path]:
    """Write `<Model>.schema.json` for every exported model; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in EXPORTED:
        path = directory / f"{model.__name__}.schema.json"
        schema = {"$comment": STRICT_NOTE, **model.model_json_schema()}
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
