"""``max_clicks`` in scale mode: one budget in Redis shared by every server process.

The "processes" are ClickCounter instances with their own connection pools, each driven from
its own thread and event loop, against the real Redis named by LIEBIAN_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from liebian.redirect.counters import ClickCounter
from redis_support import (
    REDIS_URL,
    TcpProxy,
    closed_port_url,
    needs_redis,
    prefix_fixture,
)


@dataclass
class Link:
    """What the counter reads of a cache entry."""

    id: str
    max_clicks: int | None


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from prefix_fixture()


def counter(prefix: str, seed: int | Callable[[str], int] = 0, **kw: Any) -> ClickCounter:
    seed_fn = seed if callable(seed) else (lambda _link_id: seed)
    # These tests check counts, not latency: a loaded machine must not turn a slow answer
    # into an "outage" (the production default is 0.5 s).
    kw.setdefault("timeout", 5.0)
    return ClickCounter(seed_fn, redis_url=kw.pop("url", REDIS_URL), prefix=prefix, **kw)


async def spend(
    c: ClickCounter, link: Link, times: int, *, concurrently: bool = False
) -> list[bool]:
    await c.ensure_seeded(link.id)
    if concurrently:
        return list(await asyncio.gather(*(c.consume(link) for _ in range(times))))
    return [await c.consume(link) for _ in range(times)]


def redis_value(prefix: str, link_id: str) -> int | None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(f"{prefix}clicks:{link_id}")
    finally:
        client.close()
    return None if value is None else int(value)


@needs_redis
def test_two_processes_never_exceed_the_limit_together(prefix: str) -> None:
    link = Link("lnk_shared", max_clicks=37)
    results: dict[str, list[bool]] = {}
    errors: dict[str, BaseException | None] = {}
    start = threading.Barrier(2)

    def process(name: str) -> None:
        # One "process": its own counter, connection pool and event loop.
        async def run() -> None:
            c = counter(prefix, timeout=10)  # 120 waiters share the pool's connections
            await c.ensure_seeded(link.id)
            start.wait()
            results[name] = await spend(c, link, 120, concurrently=True)
            errors[name] = c.last_error
            assert c.spent(link)  # type: ignore[arg-type]
            await c.aclose()

        asyncio.run(run())

    threads = [threading.Thread(target=process, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == {"a": None, "b": None}
    assert len(results["a"]) == len(results["b"]) == 120
    assert results["a"].count(True) + results["b"].count(True) == 37
    assert redis_value(prefix, link.id) == 240


@needs_redis
def test_seed_from_stored_clicks_and_first_seed_wins(prefix: str) -> None:
    link = Link("lnk_seeded", max_clicks=10)

    async def run() -> None:
        a = counter(prefix, seed=7)  # the event store already holds 7 human clicks
        # A second process whose store read lags (clicks not flushed) must not lower the count.
        b = counter(prefix, seed=2)
        assert await spend(a, link, 1) == [True]  # 8
        assert redis_value(prefix, link.id) == 8
        assert await spend(b, link, 5) == [True, True, False, False, False]
        assert await spend(a, link, 1) == [False]
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


@needs_redis
def test_a_lost_key_is_reseeded_from_the_store_not_from_zero(prefix: str) -> None:
    import redis

    link = Link("lnk_evicted", max_clicks=5)
    stored = {"n": 3}

    async def run() -> None:
        a = counter(prefix, seed=lambda _id: stored["n"])
        assert await spend(a, link, 1) == [True]  # 4 in Redis; the click reaches the store later
        stored["n"] = 4
        sync = redis.Redis.from_url(REDIS_URL)
        sync.delete(f"{prefix}clicks:{link.id}")  # evicted, expired, or Redis restarted empty
        sync.close()
        assert await spend(a, link, 3) == [True, False, False]
        assert redis_value(prefix, link.id) == 7  # re-seeded at 4, then 3 attempts
        assert a.last_error is None
        await a.aclose()

    asyncio.run(run())


def test_redis_down_fails_open_on_the_local_count() -> None:
    """No Redis at all: the link keeps redirecting up to its limit as this process counts."""
    link = Link("lnk_down", max_clicks=5)

    async def run() -> None:
        a = ClickCounter(lambda _id: 3, redis_url=closed_port_url(), timeout=0.5)
        assert await spend(a, link, 4) == [True, True, False, False]
        assert a.last_error is not None
        assert a.spent(link)  # type: ignore[arg-type]
        await a.aclose()

    asyncio.run(run())


def test_links_without_a_limit_never_touch_redis() -> None:
    async def run() -> None:
        a = ClickCounter(lambda _id: 0, redis_url=closed_port_url())
        free = Link("lnk_free", max_clicks=None)
        assert [await a.consume(free) for _ in range(3)] == [True, True, True]  # type: ignore[arg-type]
        assert a.last_error is None
        await a.aclose()

    asyncio.run(run())


@needs_redis
def test_clicks_let_through_during_an_outage_are_repaid(prefix: str) -> None:
    """Offline clicks are added to the shared count once Redis answers again."""
    link = Link("lnk_outage", max_clicks=10)
    proxy = TcpProxy()
    proxy.start()

    async def run() -> list[bool]:
        a = counter(prefix, url=proxy.url, retry_after=0.0)
        b = counter(prefix)
        granted = await spend(a, link, 2)  # online: Redis at 2
        await b.ensure_seeded(link.id)
        proxy.stop()
        granted += await spend(a, link, 3)  # offline: counted locally, 3 owed
        assert a.last_error is not None
        proxy.start()
        for _ in range(12):  # both processes, until the budget is gone
            granted += await spend(a, link, 1)
            granted += await spend(b, link, 1)
        await a.aclose()
        await b.aclose()
        return granted

    try:
        granted = asyncio.run(run())
    finally:
        proxy.stop()
    assert granted[:5] == [True] * 5
    assert granted.count(True) == 10  # without repaying the 3 offline clicks: 13
