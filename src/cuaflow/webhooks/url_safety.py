"""Which webhook URLs cuaflow will call: a guard against server-side request forgery.

A webhook URL must be ``http`` or ``https``, name a host, and carry no
credentials. Unless the operator sets ``CUAFLOW_WEBHOOK_ALLOW_PRIVATE=1``, every
address its host resolves to must be a public one: loopback, link-local,
private, multicast and reserved addresses are refused, so a run cannot make the
server call itself, the cloud metadata service or the internal network.

The check runs when the run is created and again before every delivery
attempt, because DNS answers change. At delivery the request is sent to the
very address that was checked (see :func:`cuaflow.webhooks.delivery`), so a
second, different DNS answer cannot slip in between the check and the connect.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_PRIVATE_ENV = "CUAFLOW_WEBHOOK_ALLOW_PRIVATE"
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CheckedUrl:
    """The verdict on a URL: why it is refused, or the address to connect to."""

    refusal: str | None
    # The checked address to send to; None when private addresses are allowed
    # (the request then goes to the host name) or when the URL is refused.
    address: str | None = None


def private_addresses_allowed() -> bool:
    """Whether the operator allows webhooks to private addresses (for local setups and tests)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def check_url(url: str) -> CheckedUrl:
    """Check ``url``'s form and, unless private addresses are allowed, what its host resolves to.

    Resolving the host blocks on DNS; call it from a thread in async code.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return CheckedUrl(f"is not a valid URL: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"'{scheme}'" if scheme else "no scheme"
        return CheckedUrl(f"must use http or https, not {shown}")
    if parts.username is not None or parts.password is not None:
        return CheckedUrl("must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        return CheckedUrl("has no host")
    if private_addresses_allowed():
        return CheckedUrl(None)
    try:
        infos = socket.getaddrinfo(host, port or DEFAULT_PORTS[scheme], type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return CheckedUrl(f"host '{host}' does not resolve: {exc}")
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        return CheckedUrl(f"host '{host}' does not resolve")
    for address in addresses:
        kind = non_public_kind(ipaddress.ip_address(address.partition("%")[0]))
        if kind is not None:
            article = "an" if kind[0] in "aeiou" else "a"
            return CheckedUrl(
                f"host '{host}' resolves to {address}, {article} {kind} address "
                f"(set {ALLOW_PRIVATE_ENV}=1 to allow it)"
            )
    return CheckedUrl(None, addresses[0])


def non_public_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``"loopback"``, ``"private"``...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None
