"""A JSON-over-HTTP gateway client shared by the SMS and push backends, and a file outbox for development."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from messages.channels import SendResult

TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"
GATEWAY_TIMEOUT = 10.0  # seconds: post_json's default


def written_then_lost(error: BaseException) -> bool:
    """Whether a request failed after it was written, its answer lost (a read timeout, a connection
    dropped while waiting for the answer): the provider may have taken it (SendResult.outcome_unknown).
    A refused connection, a connect timeout, a failed TLS handshake or name lookup: nothing went out.
    The exception's causes are followed (anymail and the twilio client wrap those of requests)."""
    import requests
    import urllib3

    seen: BaseException | None = error
    for _ in range(6):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(
            seen,
            requests.ConnectTimeout
            | urllib3.exceptions.ConnectTimeoutError
            | urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.NameResolutionError
            | requests.exceptions.SSLError,
        ):
            return False
        if isinstance(
            seen,
            requests.ReadTimeout
            | requests.exceptions.ChunkedEncodingError
            | urllib3.exceptions.ReadTimeoutError
            | urllib3.exceptions.ProtocolError
            | http.client.RemoteDisconnected,
        ):
            return True
        if type(seen).__name__ == "ReadTimeoutError":  # botocore's (Amazon SES), not imported here
            return True
        reason = getattr(seen, "reason", None)  # urllib3's MaxRetryError carries the failure
        if isinstance(reason, BaseException):
            seen = reason
            continue
        args = getattr(seen, "args", ())
        if args and isinstance(args[0], BaseException):  # requests' ConnectionError(MaxRetryError)
            seen = args[0]
            continue
        seen = seen.__cause__ or seen.__context__
    return False


def post_json(
    url: str, payload: dict[str, Any], *, token: str = "", timeout: float = GATEWAY_TIMEOUT
) -> SendResult:
    """POST a JSON payload: 2xx sent; 401/403/429/5xx and network errors temporary (the gateway's
    fault); other 4xx permanent."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(4096).decode(errors="replace")
            message_id = ""
            try:
                answer = json.loads(body or "{}")
                message_id = str(answer.get("id") or answer.get("name") or answer.get("message_id") or "")
            except (ValueError, AttributeError):
                pass
            return SendResult(
                SENT, provider_message_id=message_id, provider_response=f"{response.status} {body[:500]}"
            )
    except urllib.error.HTTPError as error:
        body = error.read(2048).decode(errors="replace")
        # 429, 5xx and a refused token (401, 403: the operator fixes it) are the gateway's: retried,
        # and counted toward its cool-down (messages.providers); another 4xx is the message's.
        fault = error.code in (401, 403, 429) or error.code >= 500
        outcome = TEMPORARY if fault else PERMANENT
        return SendResult(outcome, provider_response=f"{error.code} {body[:500]}", provider_fault=fault)
    except urllib.error.URLError as error:  # no connection, or the request not written
        answer = f"{error.__class__.__name__}: {error}"
        return SendResult(TEMPORARY, provider_response=answer, provider_fault=True)
    except (OSError, http.client.HTTPException) as error:  # written, the answer lost: maybe sent
        answer = f"{error.__class__.__name__}: {error}"
        return SendResult(TEMPORARY, provider_response=answer, provider_fault=True, outcome_unknown=True)


class FileOutbox:
    """Writes each message as a JSON file under var/outbox/<channel>/: for development and the demo."""

    channel = "outbox"
    max_send_seconds = 1.0  # a file written on a local disk

    def write(self, payload: dict[str, Any]) -> SendResult:
        folder = Path(settings.CHANNEL_OUTBOX_DIR) / self.channel
        folder.mkdir(parents=True, exist_ok=True)
        message_id = uuid.uuid4().hex
        (folder / f"{time.time_ns()}-{message_id}.json").write_text(json.dumps(payload, indent=2))
        return SendResult(SENT, provider_message_id=message_id, provider_response="written to the outbox")
