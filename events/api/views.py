"""The event API, one ViewSet: `create` (POST an event), `retrieve` (GET by PKey), `list`, and
`timeline` (GET an event's story, by PKey: not Adobe's; its regular GET keeps Adobe's shape).

The URL carries the organization twice (`/ORG/campaign/mcORG/EVTname`); both must be the caller's,
and anything else answers 404 exactly like an endpoint that does not exist, so nothing of another
organization is revealed.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.conf import settings
from rest_framework import viewsets
from rest_framework.exceptions import APIException, NotFound, UnsupportedMediaType, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from campaign import bounds
from campaign.api_errors import Conflict, FieldError, ServiceUnavailable
from campaign.auth import NOT_FOUND, ApiCaller, CredentialRateThrottle  # one wording for every "not yours"
from campaign.negotiation import AlwaysJSON
from events import selectors, services
from events.api.pagination import LineCursorPagination
from events.api.parsers import LimitedJSONParser, TextPlainJSONParser, is_json_media_type
from events.api.renderers import OrjsonRenderer
from events.api.serializers import EventInputSerializer, EventListFilterSerializer, EventOutputSerializer
from events.models import Event, EventConfiguration
from events.schema import ValidatedEvent
from events.timeline import event_timeline

logger = logging.getLogger(__name__)


class EventViewSet(viewsets.ViewSet):
    parser_classes = [LimitedJSONParser, TextPlainJSONParser]  # as OPTIONS lists them; one reads (_body)
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = AlwaysJSON
    schema = None  # described per published event by events.api.openapi
    configuration: EventConfiguration
    # False while `configuration` is this process's cached copy (POST), which may be a moment old.
    configuration_is_current: bool

    def get_throttles(self) -> list:
        return super().get_throttles() if CredentialRateThrottle.is_configured() else []

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling
        caller = cast(ApiCaller, request.user)
        organization = kwargs["organization"]
        if organization != caller.organization_slug or kwargs["api_name"] != f"mc{organization}":
            raise NotFound(NOT_FOUND)
        self.configuration_is_current = self.action != "create"
        lookup = (
            selectors.configuration_for_api
            if self.configuration_is_current
            else selectors.cached_published_configuration
        )
        configuration = lookup(organization_id=caller.organization_id, event_id=kwargs["event_id"])
        if configuration is None:
            raise NotFound(NOT_FOUND)
        self.configuration = configuration

    def get_serializer_context(self) -> dict:
        configuration = self.configuration
        organization = self.kwargs["organization"]
        return {
            "api_name": f"mc{organization}",
            "event_id": configuration.event_id,
            "channel": configuration.channel,
            # build_absolute_uri("/") without the "/": the host is validated ASCII, nothing to quote.
            "server_url": settings.PUBLIC_URL.rstrip("/")
            or f"{self.request.scheme}://{self.request.get_host()}",
        }

    def create(self, request: Request, **kwargs) -> Response:
        body = None
        try:
            body = self._body(request)
            event, created = self._accept(request, body)
        except APIException as refusal:
            # Refused against this process's copy of the configuration: decided again against the
            # configuration as it is now (unpublished: 404; published again: validated again).
            if self.configuration_is_current or not self._read_configuration_again():
                raise
            if not isinstance(refusal, ValidationError):
                raise
            event, created = self._accept(request, body)
        logger.info(
            "event %s %s",
            event.pkey,
            "accepted" if created else "replayed (Idempotency-Key)",
            extra={
                "pkey": event.pkey,
                "organization": self.kwargs["organization"],
                "event_id": self.configuration.event_id,
            },
        )
        response = Response(
            EventOutputSerializer(event, context=self.get_serializer_context()).data, status=201
        )
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response

    @staticmethod
    def _body(request: Request) -> Any:
        """The body, read by the JSON parser once its media type is checked. Not through
        `request.data`, which would parse the Content-Type header once more on every POST to see
        whether the body is a form's; an absent body is an empty object, as DRF reads it."""
        content_type = request.META.get("CONTENT_TYPE", "")
        if not is_json_media_type(content_type):
            raise UnsupportedMediaType(
                content_type or "none",
                "The body must be JSON (Content-Type: application/json or text/plain).",
            )
        if request.stream is None:
            return {}
        return LimitedJSONParser().parse(request.stream, content_type, {"encoding": request.encoding})

    def _accept(self, request: Request, body: Any) -> tuple[Event, bool]:
        validated = self._validated(body)
        idempotency_key = request.META.get("HTTP_IDEMPOTENCY_KEY", "").strip() or None
        problem = idempotency_key and bounds.text_problem(idempotency_key, max_length=255)
        if problem:
            raise FieldError("Idempotency-Key", f"The Idempotency-Key header {problem}.")
        try:
            return self._store(body, validated, idempotency_key)
        except services.IdempotencyConflict:
            raise Conflict("This Idempotency-Key was already used with another request body.") from None

    def _validated(self, body: Any) -> ValidatedEvent:
        serializer = EventInputSerializer(data=body, context={"schema": self.configuration.published_schema})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def _store(self, body: Any, validated: ValidatedEvent, idempotency_key: str | None) -> tuple[Event, bool]:
        """Ingest against the configuration as read. If it is no longer published so (this process's
        copy was a moment old), read it again and validate again, once."""
        try:
            return self._ingest(body, validated, idempotency_key)
        except services.ConfigurationChanged:
            if self.configuration_is_current or not self._read_configuration_again():
                raise ServiceUnavailable() from None
        try:
            return self._ingest(body, self._validated(body), idempotency_key)
        except services.ConfigurationChanged:  # published again between the read and the INSERT
            raise ServiceUnavailable() from None  # nothing stored: the client retries

    def _ingest(self, body: Any, validated: ValidatedEvent, key: str | None) -> tuple[Event, bool]:
        return services.ingest(
            configuration=self.configuration, validated=validated, body=body, idempotency_key=key
        )

    def _read_configuration_again(self) -> bool:
        """Replace this process's copy by the configuration as it is now; whether its publication
        changed. An unpublished configuration answers 404: the endpoint is gone."""
        configuration = selectors.published_configuration(
            organization_id=self.configuration.organization_id, event_id=self.kwargs["event_id"]
        )
        self.configuration_is_current = True
        if configuration is None:
            raise NotFound(NOT_FOUND)
        changed = configuration.published_at != self.configuration.published_at
        self.configuration = configuration
        return changed

    def retrieve(self, request: Request, pkey: str, **kwargs) -> Response:
        event = selectors.event_by_pkey(configuration=self.configuration, pkey=pkey)
        if event is None:
            raise NotFound("No event with this PKey.")
        return Response(EventOutputSerializer(event, context=self.get_serializer_context()).data)

    def timeline(self, request: Request, pkey: str, **kwargs) -> Response:
        """The event's story (events.timeline): steps, reason codes and metadata, no ctx value."""
        event = selectors.event_by_pkey(configuration=self.configuration, pkey=pkey)
        if event is None:
            raise NotFound("No event with this PKey.")
        return Response(event_timeline(event))

    def list(self, request: Request, **kwargs) -> Response:
        query = EventListFilterSerializer(
            data=request.query_params, context={"default_line_count": settings.API_PAGE_SIZE}
        )
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        events = selectors.events_of_configuration(configuration=self.configuration, status=wanted["status"])
        pagination = LineCursorPagination()
        page = pagination.paginate(
            events, request, line_count=wanted["line_count"], line_start=wanted["line_start"]
        )
        context = self.get_serializer_context()
        return pagination.response([EventOutputSerializer(e, context=context).data for e in page])
