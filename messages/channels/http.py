"""A JSON-over-HTTP gateway client shared by the SMS and push backends, and a file outbox for development."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from campaign import network
from messages.channels import Recipient, RenderedMessage, SendResult

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
    url: str,
    payload: dict[str, Any],
    *,
    token: str = "",
    timeout: float = GATEWAY_TIMEOUT,
    allow_private: bool = True,
) -> SendResult:
    """POST a JSON payload: 2xx sent; 401/403/429/5xx and network errors temporary (the gateway's
    fault); other 4xx permanent. The host is resolved and checked now (`allow_private` False: an
    organization's gateway, PROVIDER_ALLOW_PRIVATE_TARGETS off) and the POST made to the address
    checked; a redirect is not followed (a failure naming only its status: the bearer token goes
    nowhere else, and no other host's answer is kept)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
    except ValueError as error:
        return SendResult(
            TEMPORARY, provider_response=f"the gateway URL is unusable: {error}", provider_fault=True
        )
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    headers = {
        "Content-Type": "application/json",
        **({"Authorization": f"Bearer {token}"} if token else {}),
    }
    connection: http.client.HTTPConnection | None = None
    written = False
    watchdog: threading.Timer | None = None
    try:
        connection = network.pinned_connection(
            parts.scheme, parts.hostname, port, allow_private=allow_private, timeout=timeout
        )
        connection.connect()
        # The socket's timeout bounds each wait, not the request: a server answering a byte at a
        # time could hold a send past its claim. The watchdog cuts the connection at `timeout`.
        cut = threading.Event()
        watchdog = threading.Timer(timeout, _cut, args=(connection, cut))
        watchdog.daemon = True
        watchdog.start()
        connection.request("POST", path, body=json.dumps(payload).encode(), headers=headers)
        written = True
        response = connection.getresponse()
        status = response.status
        if 300 <= status < 400:
            return SendResult(
                TEMPORARY, provider_response=f"{status} redirect not followed", provider_fault=True
            )
        body = response.read(4096 if 200 <= status < 300 else 2048).decode(errors="replace")
        if cut.is_set():  # what was read may be a part: the answer is lost
            raise TimeoutError(f"no whole answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as error:
        # Written and the answer lost (a read timeout, a dropped connection): maybe sent.
        answer = f"{error.__class__.__name__}: {error}"[:500]
        return SendResult(TEMPORARY, provider_response=answer, provider_fault=True, outcome_unknown=written)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if connection is not None:
            connection.close()
    if 200 <= status < 300:
        message_id = ""
        try:
            answer = json.loads(body or "{}")
            message_id = str(answer.get("id") or answer.get("name") or answer.get("message_id") or "")
        except (ValueError, AttributeError):
            pass
        return SendResult(SENT, provider_message_id=message_id, provider_response=f"{status} {body[:500]}")
    # 429, 5xx and a refused token (401, 403: the operator fixes it) are the gateway's: retried,
    # and counted toward its cool-down (messages.providers); another 4xx is the message's.
    fault = status in (401, 403, 429) or status >= 500
    outcome = TEMPORARY if fault else PERMANENT
    return SendResult(outcome, provider_response=f"{status} {body[:500]}", provider_fault=fault)


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """End a request that outlived its timeout: its blocked read returns at once (an error, or the
    end of a part of an answer: `cut` says it was not whole)."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


class OrganizationGateway:
    """An organization's JSON gateway (SMS or push): its host checked at each request (no private
    address unless PROVIDER_ALLOW_PRIVATE_TARGETS), the POST made to the address checked."""

    waits_on_network = True  # one request per send, nothing shared: safe on several threads

    def __init__(
        self,
        *,
        url: str,
        token: str,
        payload: Callable[[RenderedMessage, Recipient], dict[str, Any]],
        timeout: float = GATEWAY_TIMEOUT,
    ) -> None:
        self.url, self.token, self.payload, self.timeout = url, token, payload, timeout

    @property
    def max_send_seconds(self) -> float:
        return 2 * float(self.timeout) + 1  # connecting, then the request (cut at its timeout)

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        allow = bool(getattr(settings, "PROVIDER_ALLOW_PRIVATE_TARGETS", False))
        return post_json(
            self.url,
            self.payload(rendered, recipient),
            token=self.token,
            timeout=self.timeout,
            allow_private=allow,
        )


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
