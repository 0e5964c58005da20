"""`POST /ims/token/v3`: OAuth 2.0 client-credentials, as Adobe IMS answers it."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from campaign.api_errors import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, correlation_id
from campaign.services import InvalidClient, SlowDown, issue_access_token

logger = logging.getLogger(__name__)
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _oauth_error(error: str, description: str, status: int) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="ims"'
    response["Cache-Control"] = "no-store"
    return response


def _client_from_basic_auth(request: HttpRequest) -> tuple[str, str]:
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return client_id, secret


def _failures_as_oauth_errors(view):
    """Our own failures in OAuth's words: `temporarily_unavailable` (503, Retry-After) while the
    database is out of reach, `server_error` (500, with the id of its log line) otherwise."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> JsonResponse:
        try:
            return view(request)
        except DATABASE_UNAVAILABLE as error:
            logger.warning("database unavailable: %s", error.__class__.__name__)
            response = _oauth_error(
                "temporarily_unavailable", "The service is unavailable; retry later.", 503
            )
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        except Exception as error:
            reference = correlation_id()
            logger.error("unexpected error %s", reference, exc_info=error, extra={"error_id": reference})
            return _oauth_error("server_error", f"An unexpected error occurred (id {reference}).", 500)

    return wrapped


@csrf_exempt
@require_POST
@_failures_as_oauth_errors
def token(request: HttpRequest) -> JsonResponse:
    if request.content_type not in (*FORM_MEDIA_TYPES, "application/json") and request.body.strip():
        return _oauth_error("invalid_request", "The body is neither a form nor JSON.", 400)
    form: Mapping[str, Any] = request.POST
    if request.content_type == "application/json":
        # Not OAuth's form encoding, but an easy mistake to forgive: read the same keys from JSON.
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _oauth_error("invalid_request", "The body is neither a form nor valid JSON.", 400)
        form = data if isinstance(data, dict) else {}
    grant_type = form.get("grant_type", "")
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id and not client_secret:
        client_id, client_secret = _client_from_basic_auth(request)
    if not client_id or not client_secret:
        return _oauth_error("invalid_client", "client_id and client_secret are required.", 401)
    if grant_type != "client_credentials":
        return _oauth_error("unsupported_grant_type", "grant_type must be client_credentials.", 400)
    try:
        issued = issue_access_token(
            api_key=client_id, client_secret=client_secret, address=request.META.get("REMOTE_ADDR", "")
        )
    except InvalidClient:
        return _oauth_error("invalid_client", "Unknown client_id or wrong client_secret.", 401)
    except SlowDown as slow_down:
        response = _oauth_error("slow_down", "Too many failed attempts; retry later.", 429)
        response["Retry-After"] = str(slow_down.retry_after)
        return response
    response = JsonResponse(
        {"access_token": issued.access_token, "token_type": "bearer", "expires_in": issued.expires_in}
    )
    response["Cache-Control"] = "no-store"
    return response
