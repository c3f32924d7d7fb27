"""The client address behind reverse proxies: X-Forwarded-For only as far as we trust it."""

from __future__ import annotations

import pytest

from liebian.kit.client_ip import ClientIpResolver, client_ip, resolver
from liebian.kit.settings import Settings

LB = "10.0.0.0/8"  # our load balancers / ingress
EDGE = "192.0.2.0/24"  # a CDN edge in front of them


def resolve(peer: str, *xff: str, trusted: tuple[str, ...] = (LB,)) -> str:
    return ClientIpResolver(trusted).resolve(peer, list(xff))


def test_no_trusted_proxies_means_no_resolver_and_the_peer_is_the_client() -> None:
    assert resolver([]) is None
    scope = {"client": ("203.0.113.9", 5555), "headers": [(b"x-forwarded-for", b"1.1.1.1")]}
    assert client_ip(scope, []) == "203.0.113.9"


def test_an_untrusted_peer_cannot_spoof_its_address() -> None:
    # A visitor talking to us directly sends whatever header it likes.
    assert resolve("203.0.113.9", "1.1.1.1") == "203.0.113.9"
    assert resolve("203.0.113.9", "10.0.0.1") == "203.0.113.9"  # not even "one of ours"


def test_a_trusted_peer_names_the_client_it_received_from() -> None:
    assert resolve("10.0.0.2", "198.51.100.7") == "198.51.100.7"


def test_entries_the_client_wrote_itself_are_ignored() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; our proxy appended the real address.
    assert resolve("10.0.0.2", "1.1.1.1, 198.51.100.7") == "198.51.100.7"
    # Even when the forged entry claims to be one of our proxies.
    assert resolve("10.0.0.2", "10.9.9.9, 198.51.100.7") == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_right_to_left() -> None:
    trusted = (LB, EDGE)
    assert resolve("10.0.0.2", "1.1.1.1, 198.51.100.7, 192.0.2.10", trusted=trusted) == (
        "198.51.100.7"
    )
    # Split over several header lines: same list, in order.
    assert (
        resolve("10.0.0.2", "1.1.1.1, 198.51.100.7", "192.0.2.10", trusted=trusted)
        == "198.51.100.7"
    )
    # Without trusting the edge, the edge is the client.
    assert resolve("10.0.0.2", "198.51.100.7, 192.0.2.10") == "192.0.2.10"


def test_only_trusted_hops_means_the_left_most_one() -> None:
    assert resolve("10.0.0.2", "10.1.1.1, 10.0.0.3") == "10.1.1.1"


def test_garbage_stops_at_the_last_hop_we_can_vouch_for() -> None:
    assert resolve("10.0.0.2", "198.51.100.7, not-an-ip") == "10.0.0.2"
    assert resolve("10.0.0.2", "198.51.100.7, unknown, 10.0.0.3") == "10.0.0.3"
    assert resolve("10.0.0.2", "") == "10.0.0.2"


def test_address_forms_proxies_write() -> None:
    assert resolve("10.0.0.2", "198.51.100.7:4711") == "198.51.100.7"
    assert resolve("10.0.0.2", "[2001:db8::1]:443") == "2001:db8::1"
    assert resolve("10.0.0.2", "2001:db8::1") == "2001:db8::1"
    # A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
    assert resolve("::ffff:10.0.0.2", "198.51.100.7") == "198.51.100.7"
    assert resolve("::1", "198.51.100.7", trusted=("::1",)) == "198.51.100.7"


def test_asgi_scope_helper() -> None:
    headers = [(b"host", b"sho.rt"), (b"x-forwarded-for", b"1.1.1.1, 198.51.100.7")]
    assert client_ip({"client": ("10.0.0.2", 1), "headers": headers}, [LB]) == "198.51.100.7"
    assert client_ip({"client": ("203.0.113.9", 1), "headers": headers}, [LB]) == "203.0.113.9"
    assert client_ip({"client": None, "headers": headers}, [LB]) == ""


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIEBIAN_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ::1")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "127.0.0.1", "::1"]
    monkeypatch.setenv("LIEBIAN_TRUSTED_PROXIES", '["172.16.0.0/12"]')
    assert Settings().trusted_proxies == ["172.16.0.0/12"]
    monkeypatch.setenv("LIEBIAN_TRUSTED_PROXIES", "10.0.0.0/8,localhost")
    with pytest.raises(ValueError, match="localhost"):
        Settings()
    monkeypatch.delenv("LIEBIAN_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []
