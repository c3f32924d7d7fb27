"""Abuse of the public endpoints (issue 9, item 10): rate limits per IP and visitor, live-code
places kept across re-scans, password guessing, forged conversions at /collect, and the
participant pages' security headers."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from liebian.app.factory import create_app
from liebian.app.runtime import Runtime
from liebian.kit.ratelimit import LocalLimiter, Rate, RedisLimiter
from liebian.kit.settings import Settings
from redis_support import REDIS_URL, closed_port_url, delete_prefix, fresh_prefix, needs_redis

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


def _app_client(settings: Settings, runtime: Runtime, **limits: Any) -> TestClient:
    runtime.settings = settings.model_copy(update=limits)
    return TestClient(create_app(runtime.settings, runtime), base_url="http://sho.rt",
                      follow_redirects=False)  # fmt: skip


@pytest.fixture
def tight(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with _app_client(
        settings,
        runtime,
        rate_limit_per_ip=20,
        rate_limit_per_visitor=5,
        rate_limit_period=3600,
        password_max_failures=3,
        password_lockout_seconds=3600,
    ) as tc:
        yield tc


def _owner(runtime: Runtime) -> dict[str, str]:
    from liebian.kit.db import session_scope
    from liebian.workspaces.service import bootstrap

    with session_scope(runtime.sessions) as session:
        _ws, key = bootstrap(session, "测试")
    return {"Authorization": f"Bearer {key}"}


def test_one_ip_gets_429_after_its_budget_and_only_answered_clicks_count(
    tight: TestClient, runtime: Runtime
) -> None:
    owner = _owner(runtime)
    link = tight.post("/api/v1/links", json={"url": "https://example.com/x"}, headers=owner).json()
    statuses = []
    for _ in range(30):  # cookie-less: every request looks like a new visitor
        tight.cookies.clear()
        statuses.append(tight.get("/" + link["slug"], headers={"user-agent": IPHONE}).status_code)
    assert statuses == [302] * 20 + [429] * 10
    tight.cookies.clear()
    refused = tight.get("/" + link["slug"], headers={"user-agent": IPHONE})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "访问太频繁" in refused.text and refused.headers["content-type"].startswith("text/html")
    assert "script-src" not in refused.headers["content-security-policy"]  # default-src 'none'
    assert refused.headers["x-content-type-options"] == "nosniff"
    stats = tight.get(f"/api/v1/links/{link['id']}/stats", headers=owner).json()
    assert stats["clicks"] == 20 and stats["unique_visitors"] == 20
    metrics = TestClient(tight.app, base_url="http://sho.rt", client=("127.0.0.1", 9)).get(
        "/metrics"
    )
    assert "liebian_rate_limited_total 11.0" in metrics.text


def test_one_visitor_gets_429_after_its_budget(tight: TestClient, runtime: Runtime) -> None:
    owner = _owner(runtime)
    link = tight.post("/api/v1/links", json={"url": "https://example.com/v"}, headers=owner).json()
    cookie = {"cookie": "lb_vid=" + secrets.token_urlsafe(12), "user-agent": IPHONE}
    statuses = [tight.get("/" + link["slug"], headers=cookie).status_code for _ in range(7)]
    assert statuses == [302] * 5 + [429] * 2
    other = {"cookie": "lb_vid=" + secrets.token_urlsafe(12), "user-agent": IPHONE}
    assert tight.get("/" + link["slug"], headers=other).status_code == 302


def test_a_phone_rescanning_a_live_code_keeps_its_place(client: Any, owner: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/live-codes",
        json={
            "name": "宝妈群",
            "targets": [
                {"url": "https://example.com/g1", "capacity": 1},
                {"url": "https://example.com/g2", "capacity": 1},
            ],
        },
        headers=owner,
    )
    assert created.status_code == 201, created.text
    code = created.json()
    # Ten anonymous scans from one phone (no cookie kept): one place taken, the same group.
    locations = set()
    for _ in range(10):
        client.cookies.clear()
        resp = client.get("/" + code["slug"], headers={"user-agent": IPHONE})
        assert resp.status_code == 302
        locations.add(resp.headers["location"])
    assert locations == {"https://example.com/g1"}
    assert "lb_vid=" in resp.headers["set-cookie"]  # so the next scan is known by its cookie
    # With its cookie, the same phone again: still its place.
    vid = resp.headers["set-cookie"].split(";")[0]
    again = client.get("/" + code["slug"], headers={"user-agent": IPHONE, "cookie": vid})
    assert again.headers["location"] == "https://example.com/g1"
    # Another phone (another model on the same Wi-Fi) gets the second group.
    android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36"
    other = client.get(
        "/" + code["slug"],
        headers={"user-agent": android, "cookie": "lb_vid=" + secrets.token_urlsafe(12)},
    )
    assert other.headers["location"] == "https://example.com/g2"
    got = client.get(f"/api/v1/live-codes/{code['id']}", headers=owner).json()
    assert [t["scans"] for t in got["targets"]] == [1, 1]


def test_password_guessing_is_locked_out_per_link_and_ip(
    tight: TestClient, runtime: Runtime
) -> None:
    owner = _owner(runtime)
    short = tight.post(
        "/api/v1/links", json={"url": "https://example.com/p", "password": "abc"}, headers=owner
    )
    assert short.status_code == 422 and "password" in short.text
    link = tight.post(
        "/api/v1/links",
        json={"url": "https://example.com/p", "password": "right-password"},
        headers=owner,
    ).json()
    path = "/" + link["slug"]
    wrong = [tight.post(path, data={"password": f"guess{i}"}).status_code for i in range(3)]
    assert wrong == [403, 403, 403]
    locked = tight.post(path, data={"password": "right-password"})
    assert locked.status_code == 429
    assert "密码错误次数过多" in locked.text and "分钟后再试" in locked.text
    assert int(locked.headers["retry-after"]) > 60
    # Another IP is not locked out by this one's guesses.
    elsewhere = TestClient(tight.app, base_url="http://sho.rt", client=("198.51.100.7", 1234),
                           follow_redirects=False)  # fmt: skip
    assert elsewhere.post(path, data={"password": "right-password"}).status_code == 303


def test_collect_refuses_conversions_and_money(tight: TestClient, runtime: Runtime) -> None:
    from liebian.campaigns.conversions import CONVERSION_EVENTS
    from liebian.events.collect import SERVER_ONLY_EVENTS

    assert CONVERSION_EVENTS <= SERVER_ONLY_EVENTS
    owner = _owner(runtime)
    ws = tight.get("/api/v1/workspace", headers=owner).json()["id"]
    for name in ("purchase", "Signup", "refund", "$identify"):
        resp = tight.post("/collect", content=json.dumps({"w": ws, "e": name, "vid": "v1"}))
        assert resp.status_code == 403, (name, resp.text)
        assert resp.json()["error"]["code"] == "server_only_event"
    money = tight.post(
        "/collect", content=json.dumps({"w": ws, "e": "view_item", "p": {"amount": 9900}})
    )
    assert money.status_code == 403 and money.json()["error"]["details"]["field"] == "p.amount"
    runtime.flush_events()
    assert runtime.event_store is not None and runtime.event_store.count(ws) == 0
    # The IP budget (20) covers beacons too: JSON 429 with Retry-After.
    statuses = [
        tight.post("/collect", content=json.dumps({"w": ws, "e": "page_view"})).status_code
        for _ in range(20)
    ]
    assert statuses == [204] * 15 + [429] * 5  # 5 of the 20 went on the refused beacons
    limited = tight.post("/collect", content=json.dumps({"w": ws, "e": "page_view"}))
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


def test_participant_pages_carry_a_csp(client: Any, owner: dict[str, str]) -> None:
    missing = client.get("/no-such-link")
    assert missing.status_code == 404
    csp = missing.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    code = client.post(
        "/api/v1/live-codes",
        json={"name": "群", "targets": [{"url": "https://example.com/g", "capacity": 1}]},
        headers=owner,
    ).json()
    for _ in range(2):  # two phones; the second finds the only place taken
        phone = {"user-agent": IPHONE, "cookie": "lb_vid=" + secrets.token_urlsafe(12)}
        full = client.get("/" + code["slug"], headers=phone)
    assert "群已满" in full.text
    assert "script-src 'none'" in full.headers["content-security-policy"]
    assert full.headers["x-frame-options"] == "DENY"


def test_gcra_allows_a_burst_then_one_per_interval() -> None:
    limiter, rate = LocalLimiter(), Rate(3, 3.0)
    assert [limiter.hit("k", rate, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("k", rate, 100.0) == pytest.approx(1.0)
    assert limiter.hit("k", rate, 101.0) == 0.0  # one interval later: one more
    assert limiter.hit("k", rate, 101.0) > 0
    assert limiter.hit("other", rate, 101.0) == 0.0
    assert limiter.hit("k", rate, 200.0, consume=False) == 0.0  # asking spends nothing


@needs_redis
def test_redis_limits_are_shared_between_processes_and_fail_open() -> None:
    prefix = fresh_prefix()
    rate = Rate(4, 60.0)

    async def scenario() -> tuple[list[float], float]:
        a = RedisLimiter(REDIS_URL, prefix=prefix)
        b = RedisLimiter(REDIS_URL, prefix=prefix)
        try:
            waits = [await (a if i % 2 else b).hit("ip:1.2.3.4", rate, 1000.0) for i in range(5)]
        finally:
            await a.close()
            await b.close()
        down = RedisLimiter(closed_port_url(), prefix=prefix)
        try:
            open_wait = await down.hit("ip:1.2.3.4", rate, 1000.0)  # falls back to local
            assert down.last_error is not None
        finally:
            await down.close()
        return waits, open_wait

    try:
        waits, open_wait = asyncio.run(scenario())
    finally:
        delete_prefix(prefix)
    assert waits[:4] == [0.0] * 4 and waits[4] > 0  # one budget across both "processes"
    assert open_wait == 0.0


def test_participant_pages_share_the_limits(tight: TestClient) -> None:
    statuses = [tight.get("/g/grp_nope").status_code for _ in range(22)]
    assert statuses == [404] * 20 + [429] * 2
    limited = tight.get("/a/ast_nope")
    assert limited.status_code == 429 and "访问太频繁" in limited.text
    assert limited.headers["content-type"].startswith("text/html")
    assert int(limited.headers["retry-after"]) >= 1
    assert "script-src 'none'" in limited.headers["content-security-policy"]
