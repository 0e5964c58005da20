"""One JSON error shape for the whole API: `{"error": {"code", "message", "field"}}`.

Failures of ours answer in the same shape: the database out of reach is a 503 with `Retry-After`
(the client retries; nothing was acknowledged), anything else unexpected a 500 whose `id` is also
in the log line that carries the traceback.
"""

from __future__ import annotations

import logging
import uuid

from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

# The database is out of reach (a cut connection, a server restarting): worth a retry, soon.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payloadTooLarge"
    default_detail = "The request body is too large."


class FieldError(exceptions.APIException):
    """A 400 (or other 4xx) about one field of the request."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalidField"

    def __init__(
        self, field: str, message: str, *, code: str = "invalidField", status_code: int = 400
    ) -> None:
        super().__init__(message, code)
        self.field = field
        self.status_code = status_code  # type: ignore[assignment]  # 400 by default, 413 for a body


class Conflict(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotencyConflict"


CODES = {
    exceptions.ParseError: "malformedJson",
    exceptions.UnsupportedMediaType: "unsupportedMediaType",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "notFound",
    exceptions.MethodNotAllowed: "methodNotAllowed",
    exceptions.Throttled: "tooManyRequests",
    exceptions.NotAcceptable: "notAcceptable",
}


def error_body(*, code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "serviceUnavailable"
    default_detail = "The service is temporarily unavailable; nothing was stored. Retry later."


def correlation_id() -> str:
    return uuid.uuid4().hex


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        set_rollback()
        response = Response(
            error_body(code=ServiceUnavailable.default_code, message=str(ServiceUnavailable.default_detail)),
            status=503,
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        reference = correlation_id()
        logger.error("unexpected error %s", reference, exc_info=exc, extra={"error_id": reference})
        set_rollback()
        body = error_body(code="internalError", message=f"An unexpected error occurred (id {reference}).")
        body["error"]["id"] = reference
        return Response(body, status=500)
    field = getattr(exc, "field", None)
    code = getattr(exc, "default_code", "error")
    for kind, name in CODES.items():
        if isinstance(exc, kind):
            code = name
    if isinstance(exc, FieldError):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else code
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_validation_error(exc.detail)
        code = "invalidField"
    response.data = error_body(code=code, message=str(message), field=field)
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _first_validation_error(detail) -> tuple[str | None, str]:
    """DRF's nested error detail -> the first (field, message)."""
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner_field, message = _first_validation_error(value)
        field = None if key == "non_field_errors" else str(key)
        return (".".join(p for p in (field, inner_field) if p) or None), message
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0])
    return None, str(detail)


def not_found_response(message: str = "Not found.") -> Response:
    return Response(error_body(code="notFound", message=message), status=404)
