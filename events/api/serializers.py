"""Input and output shapes of the event API. The input is checked against the published schema
(events.schema); the output is Adobe's: PKey, ctx, recipient, scheduled, expiration, href,
serverUrl, status, type."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from events.models import Channel, Event
from events.schema import SchemaError, ValidatedEvent, format_datetime, validate_event

RECIPIENT_OUTPUT: dict[str, tuple[tuple[str, str], ...]] = {
    Channel.EMAIL: (("email", "email"),),
    Channel.SMS: (("mobilePhone", "mobile_phone"),),
    Channel.PUSH: (
        ("pushPlatform", "push_platform"),
        ("registrationToken", "registration_token"),
        ("application", "application"),
    ),
}


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
        for output_name, attribute in RECIPIENT_OUTPUT[context["channel"]]:
            data[output_name] = getattr(event, attribute)
        data.update(
            scheduled=format_datetime(event.scheduled_at),
            expiration=format_datetime(event.expiration_at),
            href=f"{context['api_name']}/{context['event_id']}/{event.pkey}",
            serverUrl=context["server_url"],
            status=event.status,
            type=context["event_id"],
        )
        return data
