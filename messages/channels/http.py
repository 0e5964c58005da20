"""A JSON-over-HTTP gateway client shared by the SMS and push backends, and a file outbox for development."""

from __future__ import annotations

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


def post_json(url: str, payload: dict[str, Any], *, token: str = "", timeout: float = 10.0) -> SendResult:
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
    except (urllib.error.URLError, OSError) as error:
        answer = f"{error.__class__.__name__}: {error}"
        return SendResult(TEMPORARY, provider_response=answer, provider_fault=True)


class FileOutbox:
    """Writes each message as a JSON file under var/outbox/<channel>/: for development and the demo."""

    channel = "outbox"

    def write(self, payload: dict[str, Any]) -> SendResult:
        folder = Path(settings.CHANNEL_OUTBOX_DIR) / self.channel
        folder.mkdir(parents=True, exist_ok=True)
        message_id = uuid.uuid4().hex
        (folder / f"{time.time_ns()}-{message_id}.json").write_text(json.dumps(payload, indent=2))
        return SendResult(SENT, provider_message_id=message_id, provider_response="written to the outbox")
