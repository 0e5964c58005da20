"""Configuration as code: the JSON file of `import_events` / `export_events` (format in the README).

An import is all or nothing: the whole file is checked (types, names, duplicates, reconciliation,
templates) before any row is written, and the writes share one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from campaign import senders
from campaign.models import CustomResource, Organization
from events import publication, services
from events.enrichment import MAX_ENRICHMENTS
from events.models import (
    Enrichment,
    EventConfiguration,
    EventField,
    FieldType,
    Targeting,
    Typology,
    format_event_id,
)
from events.schema import SchemaError, build_schema, check_value, describe_enrichment, sample_ctx
from messages import services as message_services
from messages.channels import channel as channel_of
from messages.channels import channel_names, channels
from messages.lifecycle import PublicationError
from messages.models import TransactionalMessage

FILE_KEYS = {"organization", "events"}
FIELD_KEYS = {"name", "type", "label", "required", "maxLength", "values", "sensitive"}
COLLECTION_KEYS = {"name", "fields"}
EVENT_KEYS = {
    "name",
    "label",
    "channel",
    "targeting",
    "fields",
    "collections",
    "reconciliation",
    "typology",
    "enrichments",
    "message",
}
PROFILE_JOIN_KEYS = {"kind", "eventField", "profileField", "required"}
RESOURCE_JOIN_KEYS = {"kind", "collection", "field", "resource", "name", "required"}
# Model fields named by the publication rules (events.services.configuration_errors) -> the file's keys.
FILE_PLACES = {
    "reconciliation": "reconciliation",
    "reconciliation_event_field": "reconciliation.eventField",
    "reconciliation_profile_field": "reconciliation.profileField",
    "enrichments": "enrichments",
}
SENDER_KEYS = {"from", "replyTo", "variants", "tracking"}  # besides the content parts of the channels


class ConfigurationFileError(Exception):
    """One line that names the event and the field at fault."""


@dataclass
class PlannedEvent:
    name: str
    label: str
    channel: str
    targeting: str
    fields: list[dict[str, Any]] = field(default_factory=list)  # with "collection"
    reconciliation: dict[str, str] = field(default_factory=dict)
    typology: Typology | None = None  # profile targeting; None: the organization's default
    enrichments: list[dict[str, Any]] = field(default_factory=list)  # Enrichment's fields
    message: dict[str, Any] | None = None


def _fail(where: str, message: str) -> NoReturn:
    raise ConfigurationFileError(f"{where}: {message}")


def _label(raw: dict[str, Any], where: str, model: Any) -> str:
    label = raw.get("label", "")
    if label is None:
        return ""
    if not isinstance(label, str):
        _fail(where, "label: a text")
    limit = model._meta.get_field("label").max_length
    if len(label) > limit:
        _fail(where, f"label: at most {limit} characters")
    return label


def _check_field(raw: Any, where: str, collection: str = "") -> dict[str, Any]:
    if not isinstance(raw, dict):
        _fail(where, "a field is an object with a name and a type")
    unknown = set(raw) - FIELD_KEYS
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        _fail(where, "a field needs a name")
    try:
        EventField._meta.get_field("name").run_validators(name)
    except Exception:
        _fail(f"{where} ({name})", "a field name uses letters, digits and '_', starting with a letter")
    kind = raw.get("type", "text")
    if kind not in FieldType.values:
        _fail(f"{where} ({name})", f"unknown type '{kind}'; one of {', '.join(FieldType.values)}")
    max_length = raw.get("maxLength")
    if max_length is not None and (
        not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1
    ):
        _fail(f"{where} ({name})", "maxLength is a positive whole number")
    values = raw.get("values", [])
    if not isinstance(values, list):
        _fail(f"{where} ({name})", "values is a list")
    for value in values:
        # An allowed value the field's own type refuses would make every event fail.
        try:
            check_value({"name": name, "type": kind, "maxLength": max_length}, value, "values")
            if value is None:
                raise SchemaError("values", "null is not an allowed value")
        except SchemaError as error:
            _fail(f"{where} ({name})", f"values: {value!r} {error.message}")
    required = raw.get("required", False)
    if not isinstance(required, bool):
        _fail(f"{where} ({name})", "required is true or false")
    is_sensitive = raw.get("sensitive", False)
    if not isinstance(is_sensitive, bool):
        _fail(f"{where} ({name})", "sensitive is true or false")
    return {
        "collection": collection,
        "name": name,
        "type": kind,
        "label": _label(raw, f"{where} ({name})", EventField),
        "required": required,
        "max_length": max_length,
        "values": values,
        "sensitive": is_sensitive,
    }


def _check_event(raw: Any, index: int, organization: Organization, domains: list[str]) -> PlannedEvent:
    if not isinstance(raw, dict):
        _fail(f"events[{index}]", "an event is an object")
    raw_name = raw.get("name")
    name = services.normalise_event_name(raw_name if isinstance(raw_name, str) else "")
    where = f"event {name or f'#{index + 1}'}"
    unknown = set(raw) - EVENT_KEYS
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    for error in services.event_name_errors(name):
        _fail(where, f"name: {error}")
    channel = raw.get("channel", "email")
    if not isinstance(channel, str) or channel not in channel_names():
        _fail(where, f"channel: unknown channel '{channel}'; one of {', '.join(channel_names())}")
    targeting = raw.get("targeting", "event")
    if targeting not in Targeting.values:
        _fail(where, f"targeting: unknown targeting '{targeting}'; one of {', '.join(Targeting.values)}")
    planned = PlannedEvent(
        name=name, label=_label(raw, where, EventConfiguration), channel=channel, targeting=targeting
    )
    if not isinstance(raw.get("fields", []), list):
        _fail(where, "fields: a list of fields")
    for position, item in enumerate(raw.get("fields", [])):
        planned.fields.append({**_check_field(item, f"{where}, fields[{position}]"), "position": position})
    if not isinstance(raw.get("collections", []), list):
        _fail(where, "collections: a list of collections")
    collection_names: set[str] = set()
    for c_index, collection in enumerate(raw.get("collections", [])):
        c_where = f"{where}, collections[{c_index}]"
        if not isinstance(collection, dict) or not isinstance(collection.get("name"), str):
            _fail(c_where, "a collection is an object with a name and fields")
        unknown = set(collection) - COLLECTION_KEYS
        if unknown:
            _fail(c_where, f"unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(collection.get("fields", []), list):
            _fail(c_where, "fields: a list of fields")
        c_name = collection["name"]
        try:
            # run_validators skips "" (an empty name would make its fields top-level ones).
            if not c_name:
                raise ValidationError("empty")
            EventField._meta.get_field("collection").run_validators(c_name)
        except ValidationError:
            _fail(c_where, f"'{c_name}' is not a valid collection name")
        if c_name in collection_names:
            _fail(c_where, f"collection '{c_name}' is declared twice")
        collection_names.add(c_name)
        for position, item in enumerate(collection.get("fields", [])):
            planned.fields.append(
                {**_check_field(item, f"{c_where}.fields[{position}]", c_name), "position": position}
            )
    seen: set[tuple[str, str]] = set()
    for item in planned.fields:
        key = (item["collection"], item["name"])
        if key in seen:
            declared = f"{item['collection']}.{item['name']}" if item["collection"] else item["name"]
            _fail(where, f"field '{declared}' is declared twice")
        seen.add(key)
    reconciliation = raw.get("reconciliation") or {}
    if not isinstance(reconciliation, dict):
        _fail(where, "reconciliation: an object with eventField and profileField")
    unknown = set(reconciliation) - {"eventField", "profileField"}
    if unknown:
        _fail(f"{where}, reconciliation", f"unknown key(s) {', '.join(sorted(unknown))}")
    for side in ("eventField", "profileField"):
        if not isinstance(reconciliation.get(side, ""), str):
            _fail(f"{where}, reconciliation.{side}", "a field name")
    planned.reconciliation = {
        "eventField": reconciliation.get("eventField", ""),
        "profileField": reconciliation.get("profileField", ""),
    }
    planned.typology = _check_typology(raw, where, organization, targeting)
    planned.enrichments = _check_enrichments(raw.get("enrichments", []), where, organization)
    configuration = _unsaved_configuration(planned)
    errors = services.configuration_errors(
        configuration,
        fields=[EventField(**f) for f in planned.fields],
        enrichments=[Enrichment(**e) for e in planned.enrichments],
    )
    if errors:
        # The publication's own rules; the file names the key at fault where the rule names a field.
        place = FILE_PLACES.get(errors[0].field or "")
        _fail(f"{where}, {place}" if place else where, errors[0])
    message = raw.get("message")
    if message is not None:
        if not isinstance(message, dict):
            _fail(where, "message: an object of content parts")
        _check_message(message, channel, f"{where}, message")
        _check_senders(message, channel, f"{where}, message", organization, domains)
        schema = _schema_of(planned)
        # The editor's and the publication's checks (a draft may be incomplete until it is published),
        # rendered with the sample data as the admin's preview is.
        context = message_services.sample_template_context(
            ctx=sample_ctx(schema),
            targeting=planned.targeting,
            event_id=format_event_id(planned.name),
            with_profile=message_services.joins_profile(schema),
        )
        problems = message_services.content_problems(
            channel=channel, content=message, schema=schema, sample_context=context, require_parts=False
        )
        if problems:
            problem = problems[0]
            _fail(
                f"{where}, message.{problem.part}",
                problem.message + (f" (line {problem.line})" if problem.line else ""),
            )
        planned.message = message
    return planned


def _check_enrichments(raw: Any, where: str, organization: Organization) -> list[dict[str, Any]]:
    """The joins of an event (events.enrichment), as Enrichment's fields; a resource is found by its
    name in the file's organization (import it first with import_resource)."""
    if not isinstance(raw, list):
        _fail(where, "enrichments: a list of joins")
    if len(raw) > MAX_ENRICHMENTS:
        _fail(where, f"enrichments: at most {MAX_ENRICHMENTS}")
    planned = []
    for index, join in enumerate(raw):
        here = f"{where}, enrichments[{index}]"
        if not isinstance(join, dict):
            _fail(here, 'a join is an object with a "kind" (profile or resource)')
        kind = join.get("kind")
        if kind not in Enrichment.Kind.values:
            _fail(f"{here}.kind", f"'{kind}' is not a kind of enrichment; one of profile, resource")
        unknown = set(join) - (PROFILE_JOIN_KEYS if kind == "profile" else RESOURCE_JOIN_KEYS)
        if unknown:
            _fail(here, f"unknown key(s) {', '.join(sorted(unknown))}")
        texts = (
            ("eventField", "profileField")
            if kind == "profile"
            else ("collection", "field", "resource", "name")
        )
        for key in texts:
            value = join.get(key, "")
            if not isinstance(value, str) or len(value) > 64:
                _fail(f"{here}.{key}", "a name of at most 64 characters")
        required = join.get("required", False)
        if not isinstance(required, bool):
            _fail(f"{here}.required", "true or false")
        if kind == "profile":
            planned.append(
                {
                    "kind": kind,
                    "event_field": join.get("eventField", ""),
                    "profile_field": join.get("profileField", ""),
                    "required": required,
                }
            )
            continue
        resource = CustomResource.objects.filter(
            organization=organization, name=join.get("resource", "")
        ).first()
        if resource is None:
            _fail(
                f"{here}.resource",
                f"no custom resource '{join.get('resource', '')}' in {organization.slug} "
                "(import it first with import_resource)",
            )
        name = join.get("name", "")
        if name:
            try:
                Enrichment._meta.get_field("name").run_validators(name)
            except ValidationError:
                _fail(f"{here}.name", "a name uses letters, digits and '_', starting with a letter")
        planned.append(
            {
                "kind": kind,
                "collection": join.get("collection", ""),
                "event_field": join.get("field", ""),
                "resource": resource,
                "name": name,
                "required": required,
            }
        )
    return planned


def _check_message(message: dict[str, Any], channel: str, where: str) -> None:
    # Every channel's parts, in the registry's order: a part of another channel is named as such.
    every_part = list(dict.fromkeys(part.name for each in channels().values() for part in each.parts))
    unknown = set(message) - set(every_part) - SENDER_KEYS
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    of_channel = channel_of(channel)
    parts = of_channel.content_keys
    for key in (k for k in every_part if k in message):
        part = of_channel.part(key)
        if part is None:
            _fail(f"{where}.{key}", f"{channel} messages have no {key} (their parts: {', '.join(parts)})")
        if message[key] is not None and not isinstance(message[key], str):
            _fail(f"{where}.{key}", "a text (a template)")
        limit = _max_length(part.draft_column)
        if limit and len(message[key] or "") > limit:
            _fail(f"{where}.{key}", f"at most {limit} characters")
    sender = message.get("from")
    if sender is not None:
        if not isinstance(sender, dict) or set(sender) - {"name", "address"}:
            _fail(f"{where}.from", 'an object {"name": ..., "address": ...}')
        name, address = sender.get("name") or "", sender.get("address") or ""
        limit = _max_length("from_name") or 0
        if not isinstance(name, str) or len(name) > limit:
            _fail(f"{where}.from.name", f"a text of at most {limit} characters")
        _check_address(address, f"{where}.from.address")
    _check_address(message.get("replyTo") or "", f"{where}.replyTo")
    tracking = message.get("tracking")
    if tracking is not None:
        if not of_channel.tracked_part:
            _fail(f"{where}.tracking", f"{channel} messages are not tracked")
        keys = ["opens", "clicks"] if of_channel.tracks_opens else ["clicks"]
        if (
            not isinstance(tracking, dict)
            or set(tracking) - set(keys)
            or not all(isinstance(value, bool) for value in tracking.values())
        ):
            _fail(f"{where}.tracking", "{" + ", ".join(f'"{key}": true or false' for key in keys) + "}")


def _max_length(field_name: str) -> int | None:
    return getattr(TransactionalMessage._meta.get_field(field_name), "max_length", None)


def _check_senders(
    message: dict[str, Any], channel: str, where: str, organization: Organization, domains: list[str]
) -> None:
    """From and Reply-To in the organization's sender domains (campaign.senders)."""
    problems = senders.sender_problems(
        organization=organization,
        from_address=(message.get("from") or {}).get("address") or "",
        reply_to=message.get("replyTo") or "",
        uses_default_sender=channel_of(channel).uses_default_sender,
        domains=domains,
    )
    if "from" in problems:
        _fail(f"{where}.from.address", problems["from"])
    if "replyTo" in problems:
        _fail(f"{where}.replyTo", problems["replyTo"])


def _check_address(address: Any, where: str) -> None:
    if not isinstance(address, str):
        _fail(where, "an email address")
    if address:
        try:
            validate_email(address)
            if len(address) > (_max_length("reply_to") or 0):
                raise ValidationError("too long")
        except ValidationError:
            _fail(where, f"'{address}' is not an email address")


def _check_typology(
    raw: dict[str, Any], where: str, organization: Organization, targeting: str
) -> Typology | None:
    """The typology named by the file (a profile-based event's), which must exist already."""
    name = raw.get("typology")
    if name is None:
        return None
    if targeting != Targeting.PROFILE:
        _fail(where, "typology: only profile-based events pass typology rules")
    if not isinstance(name, str) or not name:
        _fail(where, "typology: the name of one of the organization's typologies")
    found = Typology.objects.filter(organization=organization, name=name).first()
    if found is None:
        _fail(where, f"typology: no typology '{name[:100]}' in {organization.slug} (create it in the admin)")
    return found


def _unsaved_configuration(planned: PlannedEvent) -> EventConfiguration:
    return EventConfiguration(
        name=planned.name,
        label=planned.label,
        channel=planned.channel,
        targeting=planned.targeting,
        reconciliation_event_field=planned.reconciliation["eventField"],
        reconciliation_profile_field=planned.reconciliation["profileField"],
    )


def _schema_of(planned: PlannedEvent) -> dict[str, Any]:
    """The schema the planned event will publish, by the publication's own builder."""
    return build_schema(
        _unsaved_configuration(planned),
        fields=[EventField(**f) for f in planned.fields],
        enrichments=[Enrichment(**e) for e in planned.enrichments],
    )


def check_file(data: Any) -> tuple[Organization, list[PlannedEvent]]:
    """Validate the whole file; raise ConfigurationFileError naming the first problem."""
    if not isinstance(data, dict):
        _fail("file", "the file is a JSON object with 'organization' and 'events'")
    unknown = set(data) - FILE_KEYS
    if unknown:
        _fail("file", f"unknown key(s) {', '.join(sorted(unknown))}")
    slug = data.get("organization")
    if not isinstance(slug, str) or not slug:
        _fail("organization", "the file must name its organization")
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        _fail("organization", f"no organization '{slug}' (create it with create_organization)")
    events = data.get("events")
    if not isinstance(events, list):
        _fail("events", "a list of events")
    domains = senders.declared_domains(organization)
    planned = [_check_event(raw, index, organization, domains) for index, raw in enumerate(events)]
    names = [p.name for p in planned]
    for name in names:
        if names.count(name) > 1:
            _fail(f"event {name}", "declared twice in the file")
    existing = {
        c.name: c for c in EventConfiguration.objects.filter(organization=organization, name__in=names)
    }
    for item in planned:
        current = existing.get(item.name)
        if current and (current.channel != item.channel or current.targeting != item.targeting):
            _fail(f"event {item.name}", "channel and targeting of an existing event cannot change")
    return organization, planned


def import_file(data: Any, *, publish: bool = False) -> list[EventConfiguration]:
    """Create or update every event of the file (and its message), all or nothing."""
    organization, planned = check_file(data)
    imported: list[EventConfiguration] = []
    with transaction.atomic():
        for item in planned:
            configuration, _ = EventConfiguration.objects.update_or_create(
                organization=organization,
                name=item.name,
                defaults={
                    "label": item.label,
                    "channel": item.channel,
                    "targeting": item.targeting,
                    "reconciliation_event_field": item.reconciliation["eventField"],
                    "reconciliation_profile_field": item.reconciliation["profileField"],
                    "typology": item.typology,
                },
            )
            configuration.fields.all().delete()
            EventField.objects.bulk_create(
                [EventField(configuration=configuration, **f) for f in item.fields]
            )
            configuration.enrichments.all().delete()
            Enrichment.objects.bulk_create(
                [Enrichment(configuration=configuration, **e) for e in item.enrichments]
            )
            message = TransactionalMessage.objects.filter(configuration=configuration).first()
            if item.message is not None:
                message = message or services.create_message(configuration=configuration)
                message.load_content(item.message)
                message_services.save_draft(message=message)  # the content only, never a status
            if publish:
                try:
                    configuration = publication.publish_configuration(configuration=configuration)
                    message = TransactionalMessage.objects.get(configuration=configuration)
                    publication.publish_message(message=message)
                except PublicationError as error:
                    raise ConfigurationFileError(f"event {item.name}: {error.errors[0]}") from None
            imported.append(configuration)
    return imported


def export_organization(organization: Organization) -> dict[str, Any]:
    """The organization's event types in the import format (round-trips with import_file)."""
    events = []
    configurations = (
        EventConfiguration.objects.filter(organization=organization)
        .select_related("typology")
        .prefetch_related("fields")
    )
    for configuration in configurations.order_by("name"):
        schema = build_schema(configuration)
        entry: dict[str, Any] = {
            "name": configuration.name,
            "label": configuration.label,
            "channel": configuration.channel,
            "targeting": configuration.targeting,
            "fields": [{k: v for k, v in f.items()} for f in schema["fields"]],
        }
        if schema["collections"]:
            entry["collections"] = schema["collections"]
        if configuration.targeting == Targeting.PROFILE:
            entry["reconciliation"] = schema["reconciliation"]
            if configuration.typology is not None:
                entry["typology"] = configuration.typology.name
        enrichments = configuration.enrichments.select_related("resource")
        if enrichments:
            entry["enrichments"] = [
                {k: v for k, v in describe_enrichment(e).items() if k != "resourceId"} for e in enrichments
            ]
        message = TransactionalMessage.objects.filter(configuration=configuration).first()
        if message is not None:
            entry["message"] = message.draft_content()
        events.append(entry)
    return {"organization": organization.slug, "events": events}
