"""Where the product may connect on a user's word: the addresses outside the public internet
(loopback, private, link-local, shared, multicast, reserved) that a URL or host typed in the admin
must not reach unless a setting allows it (webhooks: WEBHOOK_ALLOW_PRIVATE_TARGETS; providers:
PROVIDER_ALLOW_PRIVATE_TARGETS). Functions every app may use (events.webhook_http,
messages.provider_kinds, messages.channels): a host checked when typed, and checked again at each
connection, which is then made to the very address checked (no second lookup that a DNS rebinding
could answer differently)."""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Sequence

# A host name (labels of letters, digits and '-') or an IPv4/IPv6 literal; 253 characters at most.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def refused_address(address: str) -> bool:
    """True for an address outside the public internet (loopback, private, link-local...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def host_name_problem(host: str) -> str:
    """Why `host` is not a host name or an IP address ("" when it is one)."""
    if not host or len(host) > 253:
        return "Enter a host name or an IP address (at most 253 characters)."
    try:
        ipaddress.ip_address(host.strip("[]"))
        return ""
    except ValueError:
        pass
    if all(_LABEL.match(label) for label in host.rstrip(".").split(".")):
        return ""
    return f"'{host[:80]}' is not a host name or an IP address."


def reachable_host_problem(host: str, port: int, *, allow_private: bool) -> str:
    """Why the product may not connect to `host` ("" when it may): not a host name, does not
    resolve, or resolves to a private, loopback or link-local address (unless `allow_private`)."""
    problem = host_name_problem(host)
    if problem:
        return problem
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as error:
        return f"The host {host} does not resolve ({error})."
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        return f"The host {host} does not resolve."
    if not allow_private and any(refused_address(a) for a in addresses):
        # Never the address: a form naming what an internal name resolves to is a DNS oracle.
        return f"The host {host} resolves to a private, loopback or link-local address."
    return ""


class HostRefused(OSError):
    """A host the product may not connect to now (does not resolve, or resolves to an address
    refused): an OSError, so a backend treats it as the network failure it is."""

    def __init__(self, message: str, *, address: str = "") -> None:
        super().__init__(message)
        self.address = address  # the refused address (for the operator's own logs; never a form)


def checked_addresses(
    host: str, port: int, *, allow_private: bool, family: int = socket.AF_UNSPEC
) -> list[str]:
    """The host's addresses (of `family`), every one allowed; HostRefused otherwise (at connect time)."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise HostRefused(f"The host {host} does not resolve ({error}).") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        raise HostRefused(f"The host {host} does not resolve.")
    if not allow_private:
        private = [a for a in addresses if refused_address(a)]
        if private:
            raise HostRefused(
                f"The host {host} resolves to a private, loopback or link-local address.", address=private[0]
            )
    return addresses


def connect_first(addresses: Sequence[str], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of these (checked) addresses that answers, in the resolver's
    order, as socket.create_connection tries a name's: an IPv6 address first on a machine without
    IPv6 is no outage. The last address's error when none answers."""
    failure: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as error:
            failure = error
    raise failure or HostRefused("No address to connect to.")


def pinned_socket(host: str, port: int, *, allow_private: bool, timeout: float | None) -> socket.socket:
    """A TCP connection to one of the host's addresses, resolved and every one checked now."""
    return connect_first(checked_addresses(host, port, allow_private=allow_private), port, timeout)


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses checked beforehand (`address`: one, or several tried in
    order), the Host header naming `host`."""

    def __init__(self, host: str, port: int, *, address: str | Sequence[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = (address,) if isinstance(address, str) else tuple(address)

    def connect(self) -> None:
        self.sock = connect_first(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As PinnedHTTPConnection, over TLS: the certificate checked against the host name."""

    def __init__(self, host: str, port: int, *, address: str | Sequence[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.addresses = (address,) if isinstance(address, str) else tuple(address)

    def connect(self) -> None:
        raw = connect_first(self.addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def pinned_connection(
    scheme: str, host: str, port: int, *, allow_private: bool, timeout: float
) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `host`, resolved and checked now, made to the addresses checked."""
    addresses = checked_addresses(host, port, allow_private=allow_private)
    kind = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    return kind(host, port, address=addresses, timeout=timeout)
