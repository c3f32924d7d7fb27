"""Analytics queries are admitted per workspace (issue 9, decision 0040): a bounded number run
at once, a bounded number wait their turn in order, a bounded number start per minute, and
anything beyond gets 429 with Retry-After and a message that names the limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from liebian.analytics.admission import AnalyticsAdmission
from liebian.app.runtime import Runtime
from liebian.kit.errors import RateLimited
from liebian.kit.ratelimit import Rate

RANGE = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-03-08T00:00:00+08:00"}


def test_places_are_handed_over_in_order_and_the_queue_is_bounded() -> None:
    async def scenario() -> list[str]:
        admission = AnalyticsAdmission(concurrency=1, queue=2, per_minute=0)
        order: list[str] = []
        release = asyncio.Event()

        async def query(name: str) -> None:
            async with admission.slot("ws"):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(query("a"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(query(n)) for n in ("b", "c")]
        await asyncio.sleep(0)
        assert order == ["a"]
        # Both places in the queue are taken: the next is refused at once.
        with pytest.raises(RateLimited) as busy:
            async with admission.slot("ws"):
                pass
        assert busy.value.code == "analytics_busy"
        assert busy.value.headers() == {"retry-after": "1"}
        # Another workspace has its own places.
        async with admission.slot("other"):
            pass
        # A waiter that gives up leaves the queue without taking a place.
        waiting[0].cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, waiting[1])
        assert admission._lanes == {}
        assert admission.refused == 1
        return order

    assert asyncio.run(scenario()) == ["a", "c"]


def test_a_waiter_cancelled_after_its_turn_came_passes_the_place_on() -> None:
    async def scenario() -> list[str]:
        admission = AnalyticsAdmission(concurrency=1, queue=4, per_minute=0)
        order: list[str] = []

        async def query(name: str) -> None:
            async with admission.slot("ws"):
                order.append(name)
                await asyncio.sleep(0)

        async with admission.slot("ws"):
            b = asyncio.create_task(query("b"))
            c = asyncio.create_task(query("c"))
            await asyncio.sleep(0)
        # The place went to b; b is cancelled before it runs: c must still get one.
        b.cancel()
        await asyncio.gather(b, c, return_exceptions=True)
        assert admission._lanes == {}
        return order

    assert asyncio.run(scenario()) == ["c"]


def test_the_rate_per_workspace_answers_429_through_the_api(
    client: Any, runtime: Runtime, owner: dict[str, str]
) -> None:
    admission = runtime.extras["analytics_admission"]  # the process's, made with the app
    assert isinstance(admission, AnalyticsAdmission)
    admission.rate = Rate(2, 60.0)
    body = {**RANGE, "events": ["page_view"]}
    assert (
        client.post(
            "/api/v1/events", json=[{"event": "page_view", "user_id": "u"}], headers=owner
        ).status_code
        == 202
    )
    runtime.flush_events()
    answers = [client.post("/api/v1/analytics/counts", json=body, headers=owner) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.json()["error"]["code"] == "analytics_rate_limited"
    assert "analytics queries in the last minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    # Once the workspace's budget is known to be spent, the dispatcher answers the same 429
    # without handing the query to the framework (app/key_gate.py).
    dispatcher = client.app
    api, reached = dispatcher.api, []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope.get("path"))
        await api(scope, receive, send)

    dispatcher.api = counting
    early = client.post("/api/v1/analytics/cac", json=RANGE, headers=owner)
    assert early.status_code == 429 and early.json()["error"]["code"] == "analytics_rate_limited"
    assert reached == []
    dispatcher.api = api
    # Other endpoints of the workspace are not limited by it.
    assert client.get("/api/v1/links", headers=owner).status_code == 200
    assert "liebian_analytics_refused_total 2.0" in _loopback_metrics(client)


def _loopback_metrics(client: Any) -> str:
    """/metrics as the loopback interface sees it (the test client's address is not one)."""
    from fastapi.testclient import TestClient

    return TestClient(client.app, client=("127.0.0.1", 50000)).get("/metrics").text
