"""Outbound addresses (SSRF): which hosts the server may connect to or send people to.

A host is judged by the address it names, however it is spelt: besides dotted quads, the C
library (and so every browser and HTTP client) reads ``0x7f000001``, ``2130706433``,
``127.1`` and ``017700000001`` as 127.0.0.1, and ``[::ffff:127.0.0.1]`` is the same address
over IPv6. ``literal_address`` reads all of them the way ``socket.inet_aton`` does.

Refused: loopback, private, link-local (169.254.169.254 is the cloud metadata service),
multicast, reserved, unspecified and shared (CGNAT) addresses, and names that only exist on a
local network — unless the operator lists the network in ``LIEBIAN_ALLOWED_PRIVATE_NETWORKS``
(an intranet CRM, say).

Checking a name and then letting the HTTP client resolve it again leaves a window in which
DNS can answer differently (rebinding). ``PinnedTransport`` closes it: it resolves once,
checks every address, and connects to the checked one, keeping the name for the Host header
and for TLS (SNI and certificate check).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

LOCAL_NAMES = ("localhost",)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")


class ForbiddenAddress(Exception):
    """The host names (or resolves to) an address outbound requests may not reach."""

    def __init__(self, host: str, address: str | None) -> None:
        self.host = host
        self.address = address
        where = f"{host} ({address})" if address and address != host else host
        super().__init__(
            f"{where} is a private, loopback, link-local or reserved address; only public"
            " hosts are allowed (an operator may allow a network with"
            " LIEBIAN_ALLOWED_PRIVATE_NETWORKS)"
        )


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` spells, in any form a resolver accepts; None for a name."""
    text = host.strip().strip("[]").rstrip(".")
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        # Legacy IPv4 forms: 1 to 4 parts, each decimal, octal (0…) or hex (0x…).
        if not all(c in "0123456789abcdefxABCDEFX." for c in text) or ":" in text:
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
    return address


def is_public(address: Address, allowed: Sequence[Network] = ()) -> bool:
    if any(address in network for network in allowed):
        return True
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_link_local
        or address.is_loopback
        or address.is_unspecified
    )


def is_local_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES) or "." not in name


def check_host(host: str, allowed: Sequence[Network] = ()) -> None:
    """Refuse a host that names a forbidden address or a local-only name (no DNS lookup).
    Raises ``ForbiddenAddress``."""
    address = literal_address(host)
    if address is not None:
        if not is_public(address, allowed):
            raise ForbiddenAddress(host, str(address))
        return
    if is_local_name(host) and not allowed:
        raise ForbiddenAddress(host, None)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve_checked(
    host: str, port: int, allowed: Sequence[Network] = (), resolver: Resolver = system_resolver
) -> str:
    """Resolve ``host`` once and return the address to connect to; every address the name
    has must be allowed (one private answer among public ones is how rebinding starts)."""
    check_host(host, allowed)
    literal = literal_address(host)
    if literal is not None:
        return str(literal)
    try:
        answers = list(resolver(host, port))
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
    if not answers:
        raise httpx.ConnectError(f"cannot resolve {host}: no address")
    for answer in answers:
        address = literal_address(answer)
        if address is None or not is_public(address, allowed):
            raise ForbiddenAddress(host, answer)
    return answers[0]


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to checked addresses, and to the address it
    checked: the name is resolved once per request, the URL's host replaced by that address,
    and the name kept as the Host header and as the TLS server name (SNI and the
    certificate's hostname check)."""

    def __init__(
        self,
        *,
        allowed: Sequence[Network] = (),
        allow_all: bool = False,
        resolver: Resolver = system_resolver,
        **transport_options: Any,
    ) -> None:
        self.allowed = tuple(allowed)
        self.allow_all = allow_all
        self.resolver = resolver
        self._inner = httpx.HTTPTransport(**transport_options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        if self.allow_all:
            address = str(literal_address(host) or host)
        else:
            address = resolve_checked(host, port, self.allowed, self.resolver)
        if address != host:
            request.url = url.copy_with(host=address)
            request.headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
