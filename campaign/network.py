"""Where the product may connect on a user's word: the addresses outside the public internet
(loopback, private, link-local, shared, multicast, reserved) that a URL or host typed in the admin
must not reach unless a setting allows it (webhooks: WEBHOOK_ALLOW_PRIVATE_TARGETS; providers:
PROVIDER_ALLOW_PRIVATE_TARGETS). Pure functions every app may use (events.webhook_http,
messages.provider_kinds)."""

from __future__ import annotations

import ipaddress
import re
import socket

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
    if not allow_private:
        private = [a for a in addresses if refused_address(a)]
        if private:
            return f"The host {host} resolves to {private[0]}, a private, loopback or link-local address."
    return ""
