"""The visitor's IP address when liebian sits behind reverse proxies / load balancers.

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as
the proxies we run: starting from the socket peer and walking the list right to left, every
hop that is a trusted proxy (``LIEBIAN_TRUSTED_PROXIES``) passes us on to the address it
received the request from; the first address that is *not* a trusted proxy is the client.
Anything further left was written by the client itself and is ignored. A peer that is not a
trusted proxy is the client, whatever headers it sends.

With no trusted proxies configured there is no resolver at all (:func:`resolver` answers
``None``), so the redirect's hot path does no extra work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_XFF = b"x-forwarded-for"
_PEER_CACHE_MAX = 1024


def _parse(text: str) -> IPAddress | None:
    """An address from an XFF element: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientIpResolver:
    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr.strip(), strict=False) for cidr in trusted
        )
        # Peers are few (the load balancers) and repeat on every request.
        self._peer_trusted: dict[str, bool] = {}

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def _peer_is_trusted(self, peer: str) -> bool:
        known = self._peer_trusted.get(peer)
        if known is None:
            address = _parse(peer)
            known = address is not None and self.is_trusted(address)
            if len(self._peer_trusted) >= _PEER_CACHE_MAX:
                self._peer_trusted.clear()
            self._peer_trusted[peer] = known
        return known

    def resolve(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client address, given the socket peer and the X-Forwarded-For values in order."""
        if not peer or not forwarded_for or not self._peer_is_trusted(peer):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer
        for raw in reversed(hops):
            address = _parse(raw)
            if address is None:
                # A trusted proxy forwarded something that is not an address: the last hop we
                # can vouch for is that proxy.
                return client
            client = str(address)
            if not self.is_trusted(address):
                return client
        # Every hop is one of ours (an internal call): the left-most one.
        return client

    def from_headers(self, peer: str, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """:meth:`resolve` over raw ASGI headers (lower-case names, latin-1 values)."""
        if not self._peer_is_trusted(peer):
            return peer
        values = [value.decode("latin-1") for name, value in headers if name == _XFF]
        return self.resolve(peer, values)


@lru_cache(maxsize=8)
def _cached(trusted: tuple[str, ...]) -> ClientIpResolver:
    return ClientIpResolver(trusted)


def resolver(trusted: Sequence[str]) -> ClientIpResolver | None:
    """The resolver for these trusted proxies; ``None`` when there are none (use the peer)."""
    if not trusted:
        return None
    return _cached(tuple(trusted))


def client_ip(scope: Mapping[str, Any], trusted: Sequence[str]) -> str:
    """The client address of an ASGI scope (``request.scope`` in FastAPI); ``""`` if unknown."""
    client = scope.get("client")
    peer: str = client[0] if client else ""
    found = resolver(trusted)
    if found is None or not peer:
        return peer
    return found.from_headers(peer, scope.get("headers") or ())
