"""The webhooks' way out: a URL checked before it is saved and again at each send, after its host
name is resolved, and the POST made to the very address that was checked (no second lookup that a
DNS rebinding could answer differently). Loopback, private, link-local, shared, multicast and
reserved addresses are refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS is on. Redirects are not
followed (a 3xx is a failed attempt), and only the status line and headers of the answer are read.
"""

from __future__ import annotations

import http.client
import socket  # noqa: F401 - tests patch webhook_http.socket.getaddrinfo (the module's, shared)
import ssl  # noqa: F401 - tests patch webhook_http.ssl.create_default_context (shared)
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from campaign import network
from campaign.network import refused_address  # noqa: F401 - part of this module's interface


class TargetRefused(Exception):
    """A URL the webhooks may not reach, with the reason a person can act on."""


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    duration_ms: int
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def parse(url: str) -> urllib.parse.SplitResult:
    """The URL's parts; TargetRefused for a URL too long, not http(s), or without a host."""
    if len(url) > settings.WEBHOOK_URL_MAX_LENGTH:
        raise TargetRefused(f"The URL is longer than {settings.WEBHOOK_URL_MAX_LENGTH} characters.")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        raise TargetRefused(f"Not a URL: {error}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("The URL must start with https:// (or http://) and name a host.")
    if parts.username or parts.password:
        raise TargetRefused("The URL must not hold a user name or password.")
    return parts


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, every one of them allowed; TargetRefused otherwise."""
    try:
        return network.checked_addresses(host, port, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS)
    except network.HostRefused as refused:
        if refused.address:  # the endpoint's own administrator is told which (as before)
            raise TargetRefused(
                f"The host {host} resolves to {refused.address}, a private, loopback or link-local address."
            ) from None
        raise TargetRefused(str(refused)) from None


def check(url: str) -> None:
    """What the endpoint's form asks before saving: TargetRefused with the reason, or nothing."""
    parts = parse(url)
    resolve(parts.hostname or "", _port(parts))


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def post(url: str, *, body: bytes, headers: Mapping[str, str]) -> Answer:
    """POST `body` to `url` (checked again, resolved once); never raises: the answer or the error."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        parts = parse(url)
        host, port = parts.hostname or "", _port(parts)
        addresses = resolve(host, port)
    except TargetRefused as refused:
        return Answer(None, took(), f"refused: {refused}")
    kind = network.PinnedHTTPSConnection if parts.scheme == "https" else network.PinnedHTTPConnection
    connection = kind(host, port, address=addresses, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return Answer(response.status, took(), "" if 200 <= response.status < 300 else response.reason[:200])
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, took(), f"{type(error).__name__}: {error}"[:500])
    finally:
        connection.close()
