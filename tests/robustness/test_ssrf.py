"""Outbound addresses (issue 9, item 12): every spelling of a private address is refused for
webhooks and link destinations, an operator can allow an intranet network, and a delivery
connects to the address that was checked (no DNS rebinding in between)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from liebian.kit.netguard import (
    ForbiddenAddress,
    check_host,
    literal_address,
    parse_networks,
)
from liebian.webhooks.deliver import DeliveryPolicy, delivery_client

sys.path.insert(0, str(Path(__file__).parents[1] / "webhooks"))
from receiver import receiver

LOOPBACK_SPELLINGS = ["0x7f000001", "2130706433", "127.1", "017700000001", "127.0.0.1",
                      "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0177.0.0.1"]  # fmt: skip
OTHER_FORBIDDEN = ["169.254.169.254", "10.1.2.3", "192.168.1.1", "100.64.0.1", "0.0.0.0",
                   "224.0.0.1", "240.0.0.1", "[fe80::1]", "[fc00::1]", "localhost",
                   "db.internal", "printer.local"]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_reads_as_127_0_0_1_or_1(host: str) -> None:
    address = literal_address(host)
    assert address is not None and address.is_loopback, (host, address)
    with pytest.raises(ForbiddenAddress):
        check_host(host)


@pytest.mark.parametrize("host", OTHER_FORBIDDEN)
def test_private_link_local_multicast_reserved_and_local_names_are_refused(host: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_host(host)


@pytest.mark.parametrize("host", ["93.184.216.34", "shop.example.cn", "[2001:4860::8888]"])
def test_public_hosts_pass(host: str) -> None:
    check_host(host)


def test_an_allowed_network_lets_its_addresses_through_and_no_others() -> None:
    allowed = parse_networks(["10.20.0.0/16"])
    check_host("10.20.3.4", allowed)
    with pytest.raises(ForbiddenAddress):
        check_host("10.21.0.1", allowed)
    with pytest.raises(ForbiddenAddress):
        check_host("0x7f000001", allowed)


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "017700000001", "[::1]"])
def test_webhook_urls_in_any_loopback_spelling_are_refused(
    client: Any, owner: dict[str, str], runtime: Any, host: str
) -> None:
    runtime.settings.allow_private_webhooks = False
    resp = client.post(
        "/api/v1/webhooks",
        json={"url": f"http://{host}:8080/hooks", "topics": ["webhook.test"]},
        headers=owner,
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "private_webhook_url"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
     "http://0x7f000001/", "http://localhost:8000/admin"],
)  # fmt: skip
def test_link_destinations_may_not_be_private(
    client: Any, owner: dict[str, str], runtime: Any, url: str
) -> None:
    resp = client.post("/api/v1/links", json={"url": url}, headers=owner)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "private_destination" and error["details"]["field"] == "url"


def test_the_allow_setting_admits_an_intranet_destination_and_webhook(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    runtime.settings.allow_private_webhooks = False
    runtime.settings.allowed_private_networks = ["10.20.0.0/16"]
    link = client.post("/api/v1/links", json={"url": "http://10.20.0.7/crm"}, headers=owner)
    assert link.status_code == 201, link.text
    refused = client.post("/api/v1/links", json={"url": "http://10.30.0.7/"}, headers=owner)
    assert refused.status_code == 422
    hook = client.post(
        "/api/v1/webhooks",
        json={"url": "http://10.20.0.8/hooks", "topics": ["webhook.test"]},
        headers=owner,
    )
    assert hook.status_code == 201, hook.text


class Rebinding:
    """A resolver that answers differently each time, as a rebinding DNS server does."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def test_a_delivery_connects_to_the_address_it_checked_with_the_original_host() -> None:
    policy = DeliveryPolicy(allowed_networks=parse_networks(["127.0.0.0/8"]))
    # The name first resolves to the allowed receiver, then to somewhere else.
    resolver = Rebinding(["127.0.0.1"], ["10.9.9.9"])
    with receiver() as target:
        port = target.url.split(":")[2].split("/")[0]
        with delivery_client(policy, resolver=resolver) as http:
            resp = http.post(f"http://hooks.example.test:{port}/hooks", content=b"{}")
        assert resp.status_code == 200
        assert resolver.calls == 1  # resolved once: the connection used that answer
        assert [r.headers["Host"] for r in target.requests] == [f"hooks.example.test:{port}"]


def test_a_name_resolving_to_a_forbidden_address_is_never_connected_to() -> None:
    with receiver() as target:
        port = target.url.split(":")[2].split("/")[0]
        for answers in (["127.0.0.1"], ["93.184.216.34", "127.0.0.1"]):
            with (
                delivery_client(DeliveryPolicy(), resolver=Rebinding(answers)) as http,
                pytest.raises(ForbiddenAddress),
            ):
                http.post(f"http://hooks.example.test:{port}/hooks", content=b"{}")
        # A literal loopback address in another spelling is refused too.
        with delivery_client(DeliveryPolicy()) as http, pytest.raises(ForbiddenAddress):
            http.post(f"http://2130706433:{port}/hooks", content=b"{}")
        assert target.requests == []


def test_https_keeps_the_name_for_sni_and_the_certificate_check() -> None:
    # Pinned to a loopback port with no TLS server: what matters is the request sent.
    seen: list[httpx.Request] = []
    policy = DeliveryPolicy(allowed_networks=parse_networks(["127.0.0.0/8"]))
    client = delivery_client(policy, resolver=Rebinding(["127.0.0.1"]))
    transport = client._transport
    inner = transport._inner  # type: ignore[attr-defined]

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    transport._inner = httpx.MockTransport(record)  # type: ignore[attr-defined]
    try:
        client.post("https://hooks.example.test/hooks", content=b"{}")
    finally:
        inner.close()
        client.close()
    assert seen[0].url.host == "127.0.0.1"
    assert seen[0].headers["Host"] == "hooks.example.test"
    assert seen[0].extensions["sni_hostname"] == "hooks.example.test"
