"""The event schema: built from a configuration's fields, frozen at publication, and used by the
API to validate a POSTed body.

A schema is plain JSON (stored on the configuration as `published_schema`) so that validating a
request needs no query once the configuration is cached.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.utils import timezone

from campaign import bounds
from events.models import Enrichment, EventConfiguration, EventField, FieldType
from messages.channels import RecipientError, channel, channels

DATE_MAX_LENGTH = 64  # a date's text: longer is never valid
_email_validator = EmailValidator()
_url_validator = URLValidator()
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


class SchemaError(Exception):
    """A body that does not fit the schema; `field` is a dotted path such as `ctx.products[1].price`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def build_schema(
    configuration: EventConfiguration,
    fields: list[EventField] | None = None,
    enrichments: list[Enrichment] | None = None,
) -> dict[str, Any]:
    """The JSON schema snapshot of a configuration as it stands now (or of an unsaved one and its
    `fields` and `enrichments`, as the configuration file plans them)."""
    if fields is None:
        fields = list(configuration.fields.all())
    if enrichments is None:
        enrichments = list(configuration.enrichments.select_related("resource")) if configuration.pk else []

    def describe(field) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": field.name, "type": field.type}
        if field.label:
            entry["label"] = field.label
        if field.required:
            entry["required"] = True
        if field.max_length:
            entry["maxLength"] = field.max_length
        if field.values:
            entry["values"] = list(field.values)
        if getattr(field, "sensitive", False):
            entry["sensitive"] = True
        return entry

    collections: dict[str, list[dict[str, Any]]] = {}
    for field in fields:
        if field.collection:
            collections.setdefault(field.collection, []).append(describe(field))
    schema: dict[str, Any] = {
        "eventId": configuration.event_id,
        "channel": configuration.channel,
        "targeting": configuration.targeting,
        "fields": [describe(f) for f in fields if not f.collection],
        "collections": [{"name": name, "fields": items} for name, items in collections.items()],
    }
    sensitive = [
        f"{field.collection}.{field.name}" if field.collection else field.name
        for field in fields
        if getattr(field, "sensitive", False)
    ]
    if sensitive:  # absent when there are none: the ingest's one check (events.sensitive)
        schema["sensitiveFields"] = sensitive
    if configuration.targeting == "profile":
        schema["reconciliation"] = {
            "eventField": configuration.reconciliation_event_field,
            "profileField": configuration.reconciliation_profile_field,
        }
    if enrichments:  # absent when there are none: the schemas published before them stay equal
        schema["enrichments"] = [describe_enrichment(e) for e in enrichments]
    return schema


def describe_enrichment(enrichment: Enrichment) -> dict[str, Any]:
    """A join as the schema freezes it (and the configuration file says it, without resourceId)."""
    if enrichment.kind == Enrichment.Kind.PROFILE:
        return {
            "kind": "profile",
            "eventField": enrichment.event_field,
            "profileField": enrichment.profile_field,
            "required": enrichment.required,
        }
    resource = enrichment.resource
    return {
        "kind": "resource",
        "collection": enrichment.collection,
        "field": enrichment.event_field,
        "resource": resource.name if resource is not None else "",
        "resourceId": resource.pk if resource is not None else None,
        "name": enrichment.row_name,
        "required": enrichment.required,
    }


def parse_datetime(value: Any, field: str) -> dt.datetime:
    """ISO 8601 with or without the `T`, with milliseconds, with `Z`/offset (naive means UTC)."""
    if not isinstance(value, str):
        raise SchemaError(field, "must be an ISO 8601 date and time string")
    check_text(value, field, max_length=DATE_MAX_LENGTH)
    match = _DATETIME_RE.match(value.strip())
    if not match:
        raise SchemaError(
            field, f"'{value}' is not an ISO 8601 date and time (e.g. 2017-12-01 08:00:00.768Z)"
        )
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        tzinfo: dt.tzinfo = dt.UTC
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            tzinfo = dt.timezone(sign * offset)
        return dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=tzinfo,
        ).astimezone(dt.UTC)
    except ValueError as error:
        raise SchemaError(field, f"'{value}' is not a valid date: {error}") from None


def format_datetime(value: dt.datetime | None) -> str | None:
    """The API's date format, as in Adobe's examples: `2017-12-01 08:00:00.768Z` (UTC)."""
    if value is None:
        return None
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def check_text(value: Any, path: str, *, max_length: int | None = None) -> str:
    """A string within the bounds every text keeps (campaign.bounds), or SchemaError naming `path`."""
    if not isinstance(value, str):
        raise SchemaError(path, "must be a string")
    problem = bounds.text_problem(value, max_length=max_length)
    if problem:
        raise SchemaError(path, problem)
    return value


# What check_value compares with, as plain values named once: it runs for every value of every
# POST, and naming an enum member or writing `dict | list` costs a lookup or a new object each time.
_TEXTUAL = frozenset({FieldType.TEXT.value, FieldType.EMAIL.value, FieldType.URL.value})
_EMAIL, _URL, _INTEGER = FieldType.EMAIL.value, FieldType.URL.value, FieldType.INTEGER.value
_DECIMAL, _BOOLEAN = FieldType.DECIMAL.value, FieldType.BOOLEAN.value
_DATE, _DATETIME = FieldType.DATE.value, FieldType.DATETIME.value
_CONTAINERS = (dict, list)
_NUMBERS = (int, float, Decimal, str)


def check_value(spec: dict[str, Any], value: Any, path: str) -> Any:
    kind = spec["type"]
    if value is None:
        if spec.get("required"):
            raise SchemaError(path, "is required")
        return None
    if isinstance(value, bounds.OutOfBounds):
        raise SchemaError(path, value.reason)
    if isinstance(value, _CONTAINERS):
        raise SchemaError(
            path, f"must be a {kind} value, not an {'object' if isinstance(value, dict) else 'array'}"
        )
    if isinstance(value, str):
        check_text(value, path, max_length=spec.get("maxLength"))
    if kind in _TEXTUAL:
        if not isinstance(value, str):
            raise SchemaError(path, f"must be a string ({kind})")
        if kind == _EMAIL and value:
            try:
                _email_validator(value)
            except ValidationError:
                raise SchemaError(path, f"'{value}' is not an email address") from None
        if kind == _URL and value:
            try:
                _url_validator(value)
            except ValidationError:
                raise SchemaError(path, f"'{value}' is not a URL") from None
    elif kind == _INTEGER:
        if isinstance(value, float):
            value = Decimal(repr(value))
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, "must be an integer")
        problem = bounds.integer_problem(value)
        if problem:
            raise SchemaError(path, problem)
    elif kind == _DECIMAL:
        if isinstance(value, bool) or not isinstance(value, _NUMBERS):
            raise SchemaError(path, "must be a number")
        if isinstance(value, float):  # from a caller that parsed JSON itself (tests, previews)
            value = Decimal(repr(value))
        problem = bounds.decimal_problem(str(value))
        if problem:
            raise SchemaError(path, problem)
        if not isinstance(value, str):
            value = bounds.json_number(Decimal(value))
    elif kind == _BOOLEAN:
        if not isinstance(value, bool):
            raise SchemaError(path, "must be true or false")
    elif kind == _DATE:
        if not isinstance(value, str):
            raise SchemaError(path, "must be a date string (YYYY-MM-DD)")
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise SchemaError(path, f"'{value}' is not a date (YYYY-MM-DD)") from None
    elif kind == _DATETIME:
        parse_datetime(value, path)
    if spec.get("values") and value not in spec["values"]:
        raise SchemaError(path, f"must be one of {', '.join(map(str, spec['values']))}")
    return value


def _check_object(
    specs: list[dict[str, Any]], data: Any, path: str, collections: list[dict[str, Any]]
) -> dict:
    if not isinstance(data, dict):
        raise SchemaError(path, "must be an object")
    by_name = {spec["name"]: spec for spec in specs}
    collection_by_name = {c["name"]: c for c in collections}
    for key in data:
        if key not in by_name and key not in collection_by_name:
            raise SchemaError(f"{path}.{key}", "is not a field of this event")
    cleaned: dict[str, Any] = {}
    for spec in specs:
        if spec["name"] in data or spec.get("required"):
            try:
                cleaned_value = check_value(spec, data.get(spec["name"]), f"{path}.{spec['name']}")
            except SchemaError as error:
                if spec.get("sensitive"):  # the answer names the field, never quotes its value
                    raise SchemaError(error.field, _unquoted(error.message, data.get(spec["name"]))) from None
                raise
            if spec["name"] in data:
                cleaned[spec["name"]] = cleaned_value
    for collection in collections:
        name = collection["name"]
        if name not in data or data[name] is None:
            continue
        items = data[name]
        if not isinstance(items, list):
            raise SchemaError(f"{path}.{name}", "must be a list of objects")
        problem = bounds.collection_problem(items)
        if problem:
            raise SchemaError(f"{path}.{name}", problem)
        cleaned[name] = [
            _check_object(collection["fields"], item, f"{path}.{name}[{index}]", [])
            for index, item in enumerate(items)
        ]
    return cleaned


def _unquoted(message: str, value: Any) -> str:
    text = str(value)
    return message.replace(text, "***") if text else message


def validate_ctx(schema: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An event's `ctx` checked against a schema's fields and collections (the API's rule, and the
    preview's sample data's); SchemaError names the first bad field (`ctx.products[1].price`)."""
    return _check_object(schema.get("fields", []), ctx, "ctx", schema.get("collections", []))


@dataclass(frozen=True)
class ValidatedEvent:
    ctx: dict[str, Any]
    # The recipient as Event columns ({"email": ...}), as the channel's recipient keys give it.
    recipient: dict[str, str] = dataclasses.field(default_factory=dict)
    scheduled_at: dt.datetime | None = None
    expiration_at: dt.datetime | None = None


def validate_event(schema: dict[str, Any], body: Any) -> ValidatedEvent:
    """Check a POSTed body against a published schema; raise SchemaError naming the first bad field."""
    if not isinstance(body, dict):
        raise SchemaError("body", "must be a JSON object")
    of_channel = channel(schema["channel"])
    event_targeting = schema.get("targeting") == "event"
    allowed = {"ctx", "scheduled", "expiration", *(key.name for key in of_channel.recipient_keys)}
    for key in body:
        if key not in allowed:
            if any(key == other.name for each in channels().values() for other in each.recipient_keys):
                raise SchemaError(key, f"is not a recipient field of a {of_channel.name} event")
            raise SchemaError(key, "is not a field of this event (event data goes in ctx)")
    ctx = validate_ctx(schema, body.get("ctx", {}) if body.get("ctx") is not None else {})

    try:
        recipient = of_channel.recipient_from_body(body, required=event_targeting)
    except RecipientError as error:
        raise SchemaError(error.field, error.message) from None
    if not event_targeting:
        key = (schema.get("reconciliation") or {}).get("eventField", "")
        if key and ctx.get(key) in (None, ""):
            raise SchemaError(f"ctx.{key}", "is required: it identifies the profile")

    scheduled = parse_datetime(body["scheduled"], "scheduled") if body.get("scheduled") is not None else None
    expiration = (
        parse_datetime(body["expiration"], "expiration") if body.get("expiration") is not None else None
    )
    if scheduled and expiration and expiration < scheduled:
        raise SchemaError("expiration", "is before scheduled")
    return ValidatedEvent(ctx=ctx, recipient=recipient, scheduled_at=scheduled, expiration_at=expiration)


def sample_value(spec: dict[str, Any]) -> Any:
    """An example value for a field type, for the API preview and the message preview."""
    if spec.get("values"):
        return spec["values"][0]
    now = timezone.now()
    return {
        FieldType.TEXT: spec["name"][:1].upper() + spec["name"][1:] + " value",
        FieldType.INTEGER: 3,
        FieldType.DECIMAL: 125.5,
        FieldType.BOOLEAN: True,
        FieldType.DATE: now.date().isoformat(),
        FieldType.DATETIME: format_datetime(now),
        FieldType.EMAIL: "jane.doe@example.com",
        FieldType.URL: "https://www.example.com/",
    }.get(spec["type"], "")


def sample_ctx(schema: dict[str, Any]) -> dict[str, Any]:
    ctx: dict[str, Any] = {spec["name"]: sample_value(spec) for spec in schema.get("fields", [])}
    for collection in schema.get("collections", []):
        ctx[collection["name"]] = [
            {spec["name"]: sample_value(spec) for spec in collection["fields"]} for _ in range(2)
        ]
    return ctx


def sample_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A request body in the shape of Adobe's example, built from the schema."""
    body: dict[str, Any] = {}
    if schema.get("targeting") == "event":
        body.update(channel(schema["channel"]).sample_body())
    now = timezone.now().replace(microsecond=0)
    body["scheduled"] = format_datetime(now)
    body["expiration"] = format_datetime(now + dt.timedelta(days=30))
    body["ctx"] = sample_ctx(schema)
    return body
