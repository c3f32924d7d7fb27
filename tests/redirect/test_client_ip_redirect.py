"""LIEBIAN_TRUSTED_PROXIES end to end: the IP hashed into clicks (redirect) and beacons (/collect).

Requests come in through httpx's ASGI transport with a chosen socket peer, the way a load
balancer (trusted) or a visitor talking to us directly (untrusted) would reach the server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redirect_helpers import IPHONE_SAFARI

from liebian.app.factory import create_app
from liebian.app.runtime import Runtime
from liebian.kit.crypto import hash_ip

LB = "10.0.0.2"
VISITOR = "198.51.100.7"
FORGED = "1.1.1.1"


@pytest.fixture
def proxied(settings: Any, tmp_path: Any) -> Iterator[tuple[Any, Runtime]]:
    """An app behind a load balancer in 10.0.0.0/8 (its own data dir, the shared database)."""
    behind = settings.model_copy(
        update={"trusted_proxies": ["10.0.0.0/8"], "data_dir": tmp_path / "behind"}
    )
    rt = Runtime.build(behind)
    yield create_app(behind, rt), rt
    rt.close()


def send(app: Any, peer: str, method: str, path: str, **kw: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://sho.rt") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(run())


def click_ip_hashes(rt: Runtime) -> list[str]:
    rt.flush_events()
    assert rt.event_store is not None
    rows = rt.event_store.query(
        "SELECT ip_hash FROM events WHERE event = 'click' ORDER BY ts, event_id", {}
    )
    return [r[0] for r in rows]


def xff(value: str) -> dict[str, str]:
    return {"x-forwarded-for": value, "user-agent": IPHONE_SAFARI}


def test_redirect_takes_the_client_from_a_trusted_proxy_only(
    proxied: tuple[Any, Runtime], owner: dict[str, str], runtime: Runtime
) -> None:
    app, rt = proxied
    made = send(
        app,
        LB,
        "POST",
        "/api/v1/links",
        json={"slug": "viaproxy", "url": "https://x.cn/"},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    # Through the load balancer, with a forged entry the visitor wrote itself.
    assert send(app, LB, "GET", "/viaproxy", headers=xff(f"{FORGED}, {VISITOR}")).status_code == 302
    # A visitor reaching the server directly, claiming to be someone else.
    assert send(app, VISITOR, "GET", "/viaproxy", headers=xff(FORGED)).status_code == 302
    secret = rt.secret
    assert click_ip_hashes(rt) == [hash_ip(VISITOR, secret), hash_ip(VISITOR, secret)]


def test_without_trusted_proxies_the_header_is_ignored(
    settings: Any, owner: dict[str, str], tmp_path: Any
) -> None:
    plain = settings.model_copy(update={"data_dir": tmp_path / "plain"})
    rt = Runtime.build(plain)
    try:
        app = create_app(plain, rt)
        assert app.redirect.proxies is None  # no extra work on the hot path
        made = send(
            app,
            LB,
            "POST",
            "/api/v1/links",
            json={"slug": "direct", "url": "https://x.cn/"},
            headers=owner,
        )
        assert made.status_code == 201, made.text
        assert send(app, LB, "GET", "/direct", headers=xff(VISITOR)).status_code == 302
        assert click_ip_hashes(rt) == [hash_ip(LB, rt.secret)]
    finally:
        rt.close()


def test_collect_beacons_use_the_same_rule(
    proxied: tuple[Any, Runtime], owner: dict[str, str]
) -> None:
    app, rt = proxied
    ws = send(app, LB, "GET", "/api/v1/workspace", headers=owner).json()["id"]

    def beacon(event_id: str, peer: str, forwarded: str) -> None:
        body = json.dumps({"w": ws, "e": "page_view", "id": event_id, "vid": "v1"})
        resp = send(
            app, peer, "POST", "/collect", content=body,
            headers={"content-type": "text/plain", "x-forwarded-for": forwarded},
        )  # fmt: skip
        assert resp.status_code == 204, resp.text

    beacon("b1", LB, f"{FORGED}, {VISITOR}")
    beacon("b2", VISITOR, FORGED)
    rt.flush_events()
    assert rt.event_store is not None
    rows = rt.event_store.query("SELECT event_id, ip_hash FROM events ORDER BY event_id", {})
    assert rows == [("b1", hash_ip(VISITOR, rt.secret)), ("b2", hash_ip(VISITOR, rt.secret))]
