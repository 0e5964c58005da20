"""OpenAPI 3 (drf-spectacular): the generic event API, the token endpoint, and one path per
published event of the caller's organization with its own request schema and example.

Who asks decides what is listed: an API caller (Bearer + X-Api-Key) or an admin user sees their
organization's published events (a superuser sees all); an anonymous reader sees only the generic
shape, so the schema reveals no organization's events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny

from campaign import bounds
from campaign.auth import ApiCaller, CampaignTokenAuthentication
from events.models import EventConfiguration, FieldType
from events.schema import sample_body
from events.timeline import MAX_STEPS
from messages.channels import RecipientKey, channels
from messages.channels import channel as channel_of

DECIMAL_RULE = (
    f"plain decimal notation (no exponent, NaN or Infinity), at most {bounds.MAX_SIGNIFICANT_DIGITS} "
    "significant digits"
)
TEXT_RULE = "no U+0000 and no lone surrogate"
JSON_TYPES: dict[str, dict[str, Any]] = {
    FieldType.TEXT: {"type": "string"},
    FieldType.INTEGER: {
        "type": "integer",
        "format": "int64",
        "minimum": bounds.INTEGER_MIN,
        "maximum": bounds.INTEGER_MAX,
    },
    FieldType.DECIMAL: {
        "oneOf": [
            {"type": "number", "description": DECIMAL_RULE},
            {"type": "string", "pattern": bounds.PLAIN_DECIMAL_PATTERN, "description": DECIMAL_RULE},
        ]
    },
    FieldType.BOOLEAN: {"type": "boolean"},
    FieldType.DATE: {"type": "string", "format": "date"},
    FieldType.DATETIME: {"type": "string", "format": "date-time"},
    FieldType.EMAIL: {"type": "string", "format": "email"},
    FieldType.URL: {"type": "string", "format": "uri"},
}
DATE_TIME = {
    "type": "string",
    "description": "ISO 8601; the T between date and time is optional",
    "example": "2017-12-01 08:00:00.768Z",
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True},
            },
        }
    },
}
EVENT_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "PKey": {"type": "string"},
        "ctx": {"type": "object"},
        # + the recipient keys of every registered channel (_event_out)
        "scheduled": {**DATE_TIME, "nullable": True},
        "expiration": {**DATE_TIME, "nullable": True},
        "href": {"type": "string"},
        "serverUrl": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "pending",
                "processing",
                "paused",
                "processed",
                "ignored",
                "deliveryFailed",
                "routingFailed",
                "tooOld",
                "targetingFailed",
            ],
        },
        "type": {"type": "string"},
    },
}
_STEP_AT = {"type": "string", "format": "date-time", "example": "2026-11-29T21:53:51.123Z"}
TIMELINE: dict[str, Any] = {
    "type": "object",
    "description": (
        "An event's story, oldest step first: steps, stable reason codes and metadata, never a ctx "
        "value. The reason codes are listed in the README (Reason codes)."
    ),
    "properties": {
        "PKey": {"type": "string"},
        "type": {"type": "string", "description": "The event id, EVTname"},
        "status": EVENT_OUT["properties"]["status"],
        "truncated": {
            "type": "boolean",
            "description": f"More steps than the {MAX_STEPS} answered (the first ones are)",
        },
        "steps": {
            "type": "array",
            "maxItems": MAX_STEPS,
            "items": {
                "type": "object",
                "required": ["step", "at"],
                "properties": {
                    "step": {
                        "type": "string",
                        "enum": [
                            "received",
                            "statusChanged",
                            "routed",
                            "delivery",
                            "attempt",
                            "opened",
                            "clicked",
                            "providerEvent",
                        ],
                    },
                    "at": _STEP_AT,
                    "scheduled": {**_STEP_AT, "nullable": True, "description": "received"},
                    "expiration": {**_STEP_AT, "nullable": True, "description": "received"},
                    "attempt": {"type": "integer", "description": "The attempt it belongs to, from 1"},
                    "from": {"type": "string", "nullable": True, "description": "statusChanged"},
                    "to": {"type": "string", "description": "statusChanged"},
                    "code": {
                        "type": "string",
                        "nullable": True,
                        "description": "statusChanged, attempt: the stable reason code, e.g. retryScheduled, "
                        "quarantined, typology:no_minors, providerRejected:5.1.1",
                    },
                    "worker": {
                        "type": "string",
                        "nullable": True,
                        "description": "statusChanged (a claim), attempt: the worker process, host:pid",
                    },
                    "version": {
                        "type": "integer",
                        "nullable": True,
                        "description": "routed, delivery: the message version's number",
                    },
                    "startedAt": {**_STEP_AT, "description": "attempt: when its claim was taken"},
                    "durationMs": {"type": "integer", "description": "attempt, delivery (the provider's)"},
                    "outcome": {
                        "type": "string",
                        "enum": ["sent", "temporaryFailure", "permanentFailure"],
                        "description": "delivery",
                    },
                    "messageId": {"type": "string", "nullable": True, "description": "delivery: Message-ID"},
                    "providerResponse": {
                        "type": "string",
                        "description": "delivery: the provider's answer, addresses masked",
                    },
                    "first": {"type": "boolean", "description": "opened, clicked: the first human one"},
                    "automated": {"type": "boolean", "description": "opened, clicked: a scanner or prefetch"},
                    "link": {"type": "integer", "nullable": True, "description": "clicked: the link's index"},
                    "occurredAt": {
                        **_STEP_AT,
                        "nullable": True,
                        "description": "providerEvent: when the provider says it happened",
                    },
                    "provider": {
                        "type": "string",
                        "description": "providerEvent: e.g. Postmark, Mailgun, twilio, smpp",
                    },
                    "kind": {
                        "type": "string",
                        "enum": [
                            "hardBounce",
                            "softBounce",
                            "complaint",
                            "rejected",
                            "failed",
                            "delivered",
                            "unsubscribed",
                            "other",
                        ],
                        "description": "providerEvent",
                    },
                    "quarantined": {
                        "type": "boolean",
                        "description": "providerEvent: whether it quarantined the address",
                    },
                    "description": {
                        "type": "string",
                        "description": "providerEvent: the provider's words, addresses masked",
                    },
                    "status": {
                        "type": "string",
                        "nullable": True,
                        "description": "providerEvent: an SMS receipt's status as the provider says it "
                        "(DELIVRD, undelivered...); null for an email provider's event",
                    },
                    "errorCode": {
                        "type": "string",
                        "nullable": True,
                        "description": "providerEvent: an SMS receipt's error code, if any",
                    },
                },
            },
        },
    },
}
ERRORS = {
    str(code): {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for code, text in [
        (400, "Bad input (the field is named)"),
        (401, "Missing or bad credentials"),
        (404, "Unknown or unpublished event"),
        (413, "Body too large"),
        (415, "Not JSON (application/json or text/plain)"),
        (429, "Rate limited"),
        (503, "Temporarily unavailable, nothing stored: retry after Retry-After seconds"),
    ]
}


def _recipient_properties(keys: Iterable[RecipientKey]) -> dict[str, Any]:
    """The OpenAPI schema of recipient keys, as their channel objects declare them."""
    properties: dict[str, Any] = {}
    for key in keys:
        schema = dict(key.openapi)
        if schema.get("type") == "string" and "maxLength" in schema:
            schema.setdefault("description", TEXT_RULE)
        properties[key.name] = schema
    return properties


def _all_recipient_keys() -> list[RecipientKey]:
    return [key for each in channels().values() for key in each.recipient_keys]


def _event_out() -> dict[str, Any]:
    """An event as the API answers it: the generic shape with every registered channel's keys."""
    recipients = {key.name: {"type": "string"} for key in _all_recipient_keys()}
    pkey_and_ctx, rest = dict(list(EVENT_OUT["properties"].items())[:2]), EVENT_OUT["properties"]
    return {**EVENT_OUT, "properties": {**pkey_and_ctx, **recipients, **rest}}


def _text(max_length: int, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "description": TEXT_RULE, **schema}


def _field_schema(spec: dict[str, Any]) -> dict[str, Any]:
    schema = dict(JSON_TYPES[spec["type"]])
    if schema.get("type") == "string" and spec["type"] in (FieldType.TEXT, FieldType.EMAIL, FieldType.URL):
        schema = _text(spec.get("maxLength") or settings.TEXT_MAX_LENGTH, **schema)
    if spec.get("values"):
        schema["enum"] = spec["values"]
    if spec.get("label"):
        schema["description"] = spec["label"]
    if spec.get("sensitive"):  # stored encrypted, answered masked: only the message sent carries it
        schema["x-sensitive"] = True
        schema["description"] = (
            spec["label"] + ". " if spec.get("label") else ""
        ) + 'Sensitive: stored encrypted and answered as "***"; only the message sent carries it.'
    return schema


def request_schema(published: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a POST body for one published event."""
    ctx_properties = {spec["name"]: _field_schema(spec) for spec in published.get("fields", [])}
    for collection in published.get("collections", []):
        ctx_properties[collection["name"]] = {
            "type": "array",
            "maxItems": settings.COLLECTION_MAX_ITEMS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {spec["name"]: _field_schema(spec) for spec in collection["fields"]},
            },
        }
    required_ctx = [spec["name"] for spec in published.get("fields", []) if spec.get("required")]
    reconciliation = (published.get("reconciliation") or {}).get("eventField")
    if reconciliation and reconciliation not in required_ctx:
        required_ctx.append(reconciliation)
    ctx: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": ctx_properties}
    if required_ctx:
        ctx["required"] = required_ctx
    properties: dict[str, Any] = {"ctx": ctx, "scheduled": DATE_TIME, "expiration": DATE_TIME}
    recipient_keys = channel_of(published["channel"]).recipient_keys
    properties.update(_recipient_properties(recipient_keys))
    body: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if published.get("targeting") == "event":
        body["required"] = [key.name for key in recipient_keys if key.required]
    return body


def _configurations_for(request) -> list[EventConfiguration]:
    if request is None:
        return []
    user = getattr(request, "user", None)
    published = EventConfiguration.objects.filter(status=EventConfiguration.Status.PUBLISHED).select_related(
        "organization"
    )
    if isinstance(user, ApiCaller):
        return list(published.filter(organization_id=user.organization_id))
    if user is not None and getattr(user, "is_authenticated", False) and user.is_staff:
        if user.is_superuser:
            return list(published)
        membership = getattr(user, "membership", None)
        return list(published.filter(organization_id=membership.organization_id)) if membership else []
    return []


def _operations(*, post_body: dict[str, Any], example: dict[str, Any] | None, tag: str) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": post_body}
    if example is not None:
        content["example"] = example
    event_out = {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}
    return {
        "post": {
            "tags": [tag],
            "summary": "Send an event",
            "operationId": f"send_{tag}",
            "security": [{"bearer": [], "apiKey": []}],
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            # text/plain too: Adobe's Node SDK sends its JSON so.
            "requestBody": {
                "required": True,
                "content": {"application/json": content, "text/plain": content},
            },
            "responses": {"201": {"description": "Accepted, status pending", "content": event_out}, **ERRORS},
        },
        "get": {
            "tags": [tag],
            "summary": "List events, newest first",
            "operationId": f"list_{tag}",
            "security": [{"bearer": [], "apiKey": []}],
            "parameters": [
                {"name": "status", "in": "query", "schema": EVENT_OUT["properties"]["status"]},
                {
                    "name": "_lineCount",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "_lineStart", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "A page of events",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "content": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                    "next": {"type": "object", "properties": {"href": {"type": "string"}}},
                                },
                            }
                        }
                    },
                },
                **ERRORS,
            },
        },
    }


def _detail(tag: str) -> dict[str, Any]:
    def read(method: str, summary: str) -> dict[str, Any]:
        return {
            "tags": [tag],
            "summary": summary,
            "operationId": f"{method}_{tag}",
            "security": [{"bearer": [], "apiKey": []}],
            "parameters": [{"name": "PKey", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "The event",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}},
                },
                **ERRORS,
            },
        }

    return {
        "get": read("get", "An event's current state"),
        "post": read("read", "The same, as Adobe's Node SDK asks for it (a POST without a body)"),
    }


def _timeline(tag: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": [tag],
            "summary": "An event's story: its steps with their reason codes",
            "operationId": f"timeline_{tag}",
            "security": [{"bearer": [], "apiKey": []}],
            "parameters": [{"name": "PKey", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "The event's timeline",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Timeline"}}},
                },
                **ERRORS,
            },
        }
    }


def add_event_paths(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the token endpoint, the generic event API, and the
    caller's published events."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update({"Error": ERROR, "Event": _event_out(), "Timeline": TIMELINE})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    }
    paths = result.setdefault("paths", {})
    paths["/ims/token/v3"] = {
        "post": {
            "tags": ["auth"],
            "summary": "Get an access token (OAuth client credentials)",
            "operationId": "token",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type", "client_id", "client_secret"],
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A bearer token",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "access_token": {"type": "string"},
                                    "token_type": {"type": "string"},
                                    "expires_in": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "401": {"description": "Bad credentials"},
            },
        }
    }
    generic_body = {
        "type": "object",
        "description": "Depends on the event's published fields.",
        "properties": {
            "ctx": {"type": "object"},
            **_recipient_properties(_all_recipient_keys()),
            "scheduled": DATE_TIME,
            "expiration": DATE_TIME,
        },
    }
    base = "/{organization}/campaign/{apiName}/{eventId}"
    path_parameters = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in ("organization", "apiName", "eventId")
    ]
    generic = _operations(post_body=generic_body, example=None, tag="events")
    for operation in generic.values():
        operation["parameters"] = path_parameters + operation["parameters"]
    paths[base] = generic
    detail = _detail("events")
    for operation in detail.values():
        operation["parameters"] = path_parameters + operation["parameters"]
    paths[base + "/{PKey}"] = detail
    timeline = _timeline("events")
    timeline["get"]["parameters"] = path_parameters + timeline["get"]["parameters"]
    paths[base + "/{PKey}/timeline"] = timeline
    for configuration in _configurations_for(request):
        published: dict[str, Any] = configuration.published_schema or {}
        path = configuration.endpoint_path()
        tag = configuration.event_id
        operations = _operations(post_body=request_schema(published), example=sample_body(published), tag=tag)
        operations["post"]["description"] = configuration.label or configuration.event_id
        paths[path] = operations
        paths[path + "/{PKey}"] = _detail(tag)
        paths[path + "/{PKey}/timeline"] = _timeline(tag)
    return result


class OptionalTokenAuthentication(CampaignTokenAuthentication):
    """The API's authentication, but a reader without credentials is anonymous rather than refused."""

    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION") and not request.META.get("HTTP_X_API_KEY"):
            return None
        return super().authenticate(request)


SCHEMA_AUTHENTICATION = [OptionalTokenAuthentication, SessionAuthentication]
SCHEMA_PERMISSIONS = [AllowAny]
