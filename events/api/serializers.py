"""Input and output shapes of the event API. The input is checked against the published schema
(events.schema); the output is Adobe's: PKey, ctx, recipient, scheduled, expiration, href,
serverUrl, status, type."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from events.models import Event
from events.schema import SchemaError, ValidatedEvent, format_datetime, validate_event
from messages.channels import channel


class EventInputSerializer(serializers.BaseSerializer):
    """Validates a POSTed body against the schema given in the context (`schema`)."""

    def run_validation(self, data: Any = serializers.empty) -> ValidatedEvent:
        # DRF would answer a `null` body itself ("may not be null", no field): every body, whatever
        # its JSON type, goes to validate_event, whose first rule names the `body`.
        return self.to_internal_value(None if data is serializers.empty else data)

    def to_internal_value(self, data: Any) -> ValidatedEvent:
        try:
            return validate_event(self.context["schema"], data)
        except SchemaError as error:
            raise serializers.ValidationError({error.field: [f"{error.field}: {error.message}"]}) from None


class EventOutputSerializer(serializers.BaseSerializer):
    """An event as the API shows it. Context: `api_name`, `event_id`, `channel`, `server_url`."""

    def to_representation(self, event: Event) -> dict[str, Any]:
        context = self.context
        data: dict[str, Any] = {"PKey": event.pkey, "ctx": event.ctx}
        data.update(channel(context["channel"]).answer(event))
        data.update(
            scheduled=format_datetime(event.scheduled_at),
            expiration=format_datetime(event.expiration_at),
            href=f"{context['api_name']}/{context['event_id']}/{event.pkey}",
            serverUrl=context["server_url"],
            status=event.status,
            type=context["event_id"],
        )
        return data


class EventListFilterSerializer(serializers.BaseSerializer):
    """The list's query: `status` (one of the statuses), `_lineCount` (1-1000), `_lineStart` (a PKey)."""

    def to_internal_value(self, query: Any) -> dict[str, Any]:
        status = query.get("status") or None
        if status and status not in Event.Status.values:
            known = ", ".join(Event.Status.values)
            raise _field_error("status", f"Unknown status '{status}'; one of {known}.")
        raw_count = query.get("_lineCount", self.context["default_line_count"])
        try:
            line_count = int(raw_count)
        except (TypeError, ValueError):
            raise _field_error("_lineCount", "_lineCount must be a whole number.") from None
        if not 1 <= line_count <= 1000:
            raise _field_error("_lineCount", "_lineCount must be between 1 and 1000.")
        return {"status": status, "line_count": line_count, "line_start": query.get("_lineStart") or None}


def _field_error(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [message]})
