"""Decoding Kafka record values into validated models, isolating what is bad.

A record value is either one JSON object (one event) or a JSON array of events (a batch, as
the publish SDK packs them to amortise per-record cost). Valid events pass; each bad event,
or a whole record that cannot be read at all, comes back as a `Rejected` with the reason and
the bytes to keep in the dead-letter topic.

Decoding never raises: whatever a record holds (invalid UTF-8, lone surrogates, nesting
bombs, a million empty objects, numbers of 5,000 digits), the caller gets a reason to
dead-letter it with, and the next record is read.

JSON is validated in pydantic's strict mode (`STRICT`): a string is not a number ("200"), a
boolean not an integer, a number with a fraction part not an integer (200.0 is refused too),
and a timestamp is RFC 3339 text, never an epoch number (`schemas._base.Timestamp`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, cast

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import CoreSchema, SchemaError, SchemaSerializer, SchemaValidator, core_schema

from pipeline.runtime.json_guard import many_values, oversized, parse_array, parse_json, too_long

__all__ = [
    "STRICT",
    "Codec",
    "Rejected",
    "RowCodec",
    "UnsupportedModel",
    "encode_batch",
    "encode_batches",
    "encode_one",
    "format_error",
    "reason_text",
    "row_schemas",
]

M = TypeVar("M", bound=BaseModel)
_ERROR_MAX = 2000
_WHITESPACE = b" \t\r\n"
# Strict validation of JSON input (the contract the README states). Python code building
# records keeps pydantic's usual conversions: it is not input.
STRICT = True


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a record (index -1) or one event of a batch (index ≥ 0) was refused."""

    index: int
    error: str
    payload: bytes


def reason_text(text: str) -> str:
    """A rejection reason as bounded, valid UTF-8 text (a reason may quote a lone surrogate).

    Cut after escaping: an escape is longer than its character, and a dead letter refuses an
    error over 2,000 characters."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:_ERROR_MAX]


def _reject(index: int, error: str, payload: bytes) -> Rejected:
    return Rejected(index, reason_text(error), payload)


def _is_branch_tag(part: object) -> bool:
    """Union branches show up in locations as tags like `constrained-str` or `function-after[...]`."""
    return isinstance(part, str) and ("[" in part or part in _BRANCH_TAGS)


_BRANCH_TAGS = {"constrained-str", "str", "int", "float", "none"}


def format_error(exc: ValidationError) -> str:
    """Pydantic's errors as one compact line: `field.path: message; ...`.

    For a union (e.g. an IP: a fast IPv4 pattern, then a full parser) only the last branch's
    message is kept: it is the most specific one.
    """
    by_loc: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_branch_tag(p)) or "<record>"
        by_loc[loc] = err["msg"]
    return reason_text("; ".join(f"{loc}: {msg}" for loc, msg in by_loc.items()))


class Codec(Generic[M]):
    """Decode record values into `model` instances; never raises, whatever the bytes."""

    def __init__(self, model: type[M], *, max_record_bytes: int = 8 << 20, max_events: int = 10_000):
        self.model = model
        self.max_record_bytes = max_record_bytes
        self.max_events = max_events
        # an object with more keys than this has unknown ones (None: unknown keys are not refused)
        self._fields = len(model.model_fields) if model.model_config.get("extra") == "forbid" else None
        self._one: TypeAdapter[M] = TypeAdapter(model)
        # The bound is checked while the array is read: 2.7 M empty objects in 8 MB took 32 s of
        # errors to refuse when it was counted afterwards.
        self._many: TypeAdapter[list[M]] = TypeAdapter(
            Annotated[list[model], Field(max_length=max_events)])  # type: ignore[valid-type,arg-type]

    def decode(self, value: bytes | None) -> tuple[list[M], list[Rejected]]:
        try:
            return self._decode(value)
        except Exception as exc:  # a record that breaks the decoder is the record's fault, never the stream's
            return [], [_reject(-1, f"could not decode: {exc!r}", bytes(value or b""))]

    def _decode(self, value: bytes | None) -> tuple[list[M], list[Rejected]]:
        if not value:
            return [], [Rejected(-1, "empty message", b"")]
        if len(value) > self.max_record_bytes:
            return [], [Rejected(-1, f"record of {len(value)} bytes exceeds {self.max_record_bytes}", value)]
        first = value.lstrip(_WHITESPACE)[:1]
        if first == b"[":
            return self._decode_batch(value)
        if first == b"{":
            return self._decode_one(value)
        return [], [Rejected(-1, "not a JSON object or array", value)]

    def _decode_one(self, value: bytes) -> tuple[list[M], list[Rejected]]:
        why = many_values(value) and oversized(parse_json(value), self._fields)
        if why:
            return [], [_reject(-1, why, value)]
        try:
            return [self._one.validate_json(value, strict=STRICT)], []
        except ValidationError as exc:
            return [], [Rejected(-1, format_error(exc), value)]

    def encode_event(self, event: M) -> bytes:
        """One decoded event as JSON (e.g. the evidence of a dead letter)."""
        return encode_one(event)

    def _decode_batch(self, value: bytes) -> tuple[list[M], list[Rejected]]:
        suspect = many_values(value) and self._holds_oversized(value)
        if not suspect:
            try:
                return self._many.validate_json(value, strict=STRICT), []
            except ValidationError as exc:
                count = too_long(exc)
                if count is not None:
                    return [], [Rejected(-1, f"batch of {count} events exceeds {self.max_events}", value)]
                # else the slow path below finds out which items are bad
        items = parse_array(value)
        if isinstance(items, str):
            return [], [_reject(-1, items, value)]
        if len(items) > self.max_events:
            return [], [Rejected(-1, f"batch of {len(items)} events exceeds {self.max_events}", value)]
        good: list[M] = []
        bad: list[Rejected] = []
        for i, item in enumerate(items):
            # Each item is validated as JSON again, so the batch's good events get exactly the
            # contract of the fast path (strict JSON: validating the parsed Python values would
            # follow Python's rules), and one item's lone surrogate refuses that item alone.
            raw = _dump(item)
            why = suspect and oversized(item, self._fields)
            if why:
                bad.append(_reject(i, why, raw))
                continue
            try:
                good.append(self._one.validate_json(raw, strict=STRICT))
            except ValidationError as exc:
                bad.append(Rejected(i, format_error(exc), raw))
            except Exception as exc:  # one item must not take its batch down
                bad.append(_reject(i, f"could not decode: {exc!r}", raw))
        return good, bad

    def _holds_oversized(self, value: bytes) -> bool:
        """Whether an item of this large batch is to be refused by its shape (`pipeline.runtime.json_guard`)."""
        parsed = parse_json(value)
        if not isinstance(parsed, list) or len(parsed) > self.max_events:
            return False  # validation refuses it at once
        return any(oversized(item, self._fields) for item in parsed)


def _dump(item: Any) -> bytes:
    """An item of a parsed batch as ASCII JSON: lone surrogates stay escapes, numbers keep their type."""
    return json.dumps(item, default=str).encode("ascii")


def encode_one(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def encode_batch(models: Sequence[BaseModel]) -> bytes:
    """A JSON array of models: the batch form every consumer of ours accepts."""
    return b"[" + b",".join(m.__pydantic_serializer__.to_json(m) for m in models) + b"]"


def encode_batches(models: Sequence[BaseModel], max_bytes: int, max_events: int = 1000) -> list[bytes]:
    """The models as JSON arrays of at most `max_bytes` and `max_events` each, in order.

    What one Kafka message can carry is bounded (the producer's request size, the broker's
    `message.max.bytes`): 9,000 dead letters of one bad 8 MB record made a 13.4 MB array, and
    the send failed. A model larger than `max_bytes` on its own goes alone.
    """
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 2  # the brackets
    for m in models:
        item = m.__pydantic_serializer__.to_json(m)
        grown = size + len(item) + (1 if chunk else 0)
        if chunk and (grown > max_bytes or len(chunk) >= max_events):
            out.append(b"[" + b",".join(chunk) + b"]")
            chunk, grown = [], 2 + len(item)
        chunk.append(item)
        size = grown
    if chunk:
        out.append(b"[" + b",".join(chunk) + b"]")
    return out


# -- rows: the same contract, without model instances ------------------------------------------

# Keys of a model's core schema that change nothing for JSON input validated into a dict, or
# serialised from one. Anything else (a model validator wrapping the model, custom __init__,
# model_post_init, a model serializer, computed fields, extra="allow", aliases, ...) makes the
# row decoder unfaithful: such models keep the model path.
_MODEL_KEYS = {"type", "cls", "generic_origin", "schema", "custom_init", "root_model", "post_init",
               "revalidate_instances", "frozen", "config", "ref", "metadata"}
_FIELDS_KEYS = {"type", "fields", "model_name", "computed_fields", "extra_behavior", "ref", "metadata"}
_FIELD_KEYS = {"type", "schema", "serialization_exclude", "serialization_exclude_if", "frozen", "metadata"}


class UnsupportedModel(TypeError):
    """The model's contract cannot be reproduced faithfully on plain dicts."""


def _check_field_schema(node: Any, where: str) -> None:
    """Refuse what behaves differently inside a typed dict than inside a model.

    A validator taking `info` may read `info.data` (the fields validated so far), a field
    serializer receives the model instance, a default factory may take the validated data:
    none of these is known to behave alike on a dict, so they are refused, wherever they are.
    """
    if isinstance(node, dict):
        if node.get("type") == "with-info":
            raise UnsupportedModel(f"{where}: validator with info")
        if node.get("is_field_serializer"):
            raise UnsupportedModel(f"{where}: field serializer")
        if node.get("default_factory_takes_data"):
            raise UnsupportedModel(f"{where}: default factory taking data")
        for key, value in node.items():
            if key != "metadata":
                _check_field_schema(value, where)
    elif isinstance(node, list | tuple):
        for item in node:
            _check_field_schema(item, where)


def row_schemas(model: type[BaseModel], columns: Sequence[str] | None = None) -> tuple[CoreSchema, CoreSchema, Any]:
    """A typed-dict core schema with the very field schemas, defaults, config and extra-field
    policy of `model`, for validating, and the same for serialising with only `columns` (all
    fields when None) written out; plus the model's core config.

    Raises `UnsupportedModel` when rows could differ from the model's (see `_MODEL_KEYS`).
    """
    schema = cast(dict[str, Any], model.__pydantic_core_schema__)
    if schema.get("type") != "model" or schema.get("cls") is not model:
        raise UnsupportedModel(f"{model.__name__}: core schema is {schema.get('type')!r}, not a bare model "
                               "(a model validator?)")
    fields_schema = cast(dict[str, Any], schema["schema"])
    unknown = (set(schema) - _MODEL_KEYS) | (set(fields_schema) - _FIELDS_KEYS)
    if unknown:
        raise UnsupportedModel(f"{model.__name__}: {', '.join(sorted(unknown))}")
    if schema.get("custom_init") or schema.get("root_model") or schema.get("post_init"):
        raise UnsupportedModel(f"{model.__name__}: custom __init__, root model or post-init")
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        raise UnsupportedModel(f"{model.__name__}: computed fields")
    config = cast(dict[str, Any], schema.get("config") or {})
    extra = cast(core_schema.ExtraBehavior,
                 fields_schema.get("extra_behavior") or config.get("extra_fields_behavior") or "ignore")
    if extra not in ("forbid", "ignore"):  # "allow" keeps extras in the model and writes them out
        raise UnsupportedModel(f"{model.__name__}: extra={extra!r}")
    wanted = set(model.model_fields if columns is None else columns)
    validate: dict[str, core_schema.TypedDictField] = {}
    serialise: dict[str, core_schema.TypedDictField] = {}
    for name, field in cast(dict[str, dict[str, Any]], fields_schema["fields"]).items():
        if field.get("type") != "model-field" or set(field) - _FIELD_KEYS:
            raise UnsupportedModel(f"{model.__name__}.{name}: {', '.join(sorted(set(field) - _FIELD_KEYS))}")
        inner = field["schema"]
        _check_field_schema(inner, f"{model.__name__}.{name}")
        # A model field is optional exactly when its schema carries a default (a missing key
        # then takes it); a typed dict wants that said with `required`.
        required = inner.get("type") != "default"
        if not required and "default" not in inner and "default_factory" not in inner:
            raise UnsupportedModel(f"{model.__name__}.{name}: default schema without a default")
        kw: dict[str, Any] = {"required": required}
        if field.get("serialization_exclude_if") is not None:
            kw["serialization_exclude_if"] = field["serialization_exclude_if"]
        validate[name] = core_schema.typed_dict_field(inner, **kw)
        serialise[name] = core_schema.typed_dict_field(
            inner, serialization_exclude=bool(field.get("serialization_exclude")) or name not in wanted, **kw)
    core_config = cast(core_schema.CoreConfig, config)
    return (core_schema.typed_dict_schema(validate, extra_behavior=extra, config=core_config),
            core_schema.typed_dict_schema(serialise, extra_behavior=extra, config=core_config),
            core_config)


class RowCodec(Codec[Any]):
    """Like `Codec(model)`, but decodes into rows: plain dicts of the model's validated fields.

    The validator is derived from the model's own core schema (the same field schemas with
    their constraints and validators, defaults, config such as `str_max_length`, and extra-field
    policy), so it accepts and rejects exactly what `Codec(model)` does and a row holds the very
    values a model instance would (canonical IPs, aware datetimes, enum members, defaults
    filled) — without building model instances, which is about half of the decoding cost.
    The decoding steps (bounds, batch fast path, per-item isolation) are `Codec`'s own.

    `encode(rows)` writes rows as a JSON array with the model's field serializers, so a row
    serialises to the bytes the model would (restricted to `columns` when given).

    Models whose contract lives partly outside their field schemas (model validators, custom
    init, computed fields, aliases, ...) are refused with `UnsupportedModel`; `for_model`
    returns None for them, and callers keep using `Codec`.
    """

    def __init__(self, model: type[BaseModel], *, columns: Sequence[str] | None = None,
                 max_record_bytes: int = 8 << 20, max_events: int = 10_000):
        validate, serialise, config = row_schemas(model, columns)
        super().__init__(model, max_record_bytes=max_record_bytes, max_events=max_events)
        try:
            self._one = SchemaValidator(validate, config)  # type: ignore[assignment]  # same validate_* API
            self._many = SchemaValidator(  # type: ignore[assignment]
                core_schema.list_schema(validate, max_length=max_events), config)
            self._encoder = SchemaSerializer(core_schema.list_schema(serialise), config)
        except SchemaError as exc:  # e.g. references to definitions outside the model's schema
            raise UnsupportedModel(f"{model.__name__}: {exc}") from exc
        self.columns = tuple(columns) if columns is not None else tuple(model.model_fields)

    @classmethod
    def for_model(cls, model: type[BaseModel], **kwargs: Any) -> RowCodec | None:
        """A RowCodec for `model`, or None when rows could not follow its contract faithfully."""
        try:
            return cls(model, **kwargs)
        except UnsupportedModel:
            return None

    def encode(self, rows: Sequence[dict[str, Any]]) -> bytes:
        """Rows (from `decode`) as one JSON array of objects, as the model would serialise them."""
        return self._encoder.to_json(rows)

    def encode_event(self, event: Any) -> bytes:
        """One row as the JSON object its model would be."""
        return self.encode([event])[1:-1]
