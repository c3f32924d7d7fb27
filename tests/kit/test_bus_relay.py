"""The Redis bus relay: invalidations cross between processes, once, never echoed back.

Two buses with a relay each stand for two server processes (they share nothing but the Redis
named by LIEBIAN_TEST_REDIS_URL; every test uses a channel of its own). The full-app test at
the end runs two complete apps on one database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from liebian.kit.bus import LocalBus
from liebian.kit.bus_relay import RESYNC_TOPIC, RedisBusRelay
from redis_support import REDIS_URL, TcpProxy, needs_redis, prefix_fixture, wait_until

pytestmark = needs_redis

SLUG = "slug.changed"
KEYS = "api_key.revoked"


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from prefix_fixture()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


class Process:
    """A bus, its relay, and a log of everything its subscribers saw."""

    def __init__(self, prefix: str, url: str = "", **kw: Any) -> None:
        self.bus = LocalBus()
        self.relay = RedisBusRelay(self.bus, url or REDIS_URL, prefix=prefix, **kw)
        self.seen: list[tuple[str, Any]] = []
        for topic in (SLUG, KEYS, "group.succeeded", RESYNC_TOPIC):
            self.bus.subscribe(topic, lambda payload, t=topic: self.seen.append((t, payload)))

    def got(self, topic: str, payload: Any) -> bool:
        return (topic, payload) in self.seen


class ChannelTap:
    """A plain subscriber on the relay channel: what really went over Redis."""

    def __init__(self, prefix: str) -> None:
        from redis.asyncio import Redis

        self.client = Redis.from_url(REDIS_URL)
        self.channel = prefix + "bus"
        self.messages: list[dict[str, Any]] = []

    async def __aenter__(self) -> ChannelTap:
        import orjson

        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(self.channel)

        async def read() -> None:
            while True:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    self.messages.append(orjson.loads(message["data"]))

        self.task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


def test_an_invalidation_crosses_over_once_and_is_not_echoed(prefix: str) -> None:
    async def run() -> None:
        a, b = Process(prefix), Process(prefix)
        async with ChannelTap(prefix) as tap:
            await a.relay.start()
            await b.relay.start()
            try:
                # Published from a worker thread, as API handlers do after their commit.
                await asyncio.to_thread(a.bus.publish, SLUG, "summer")
                await until(lambda: b.got(SLUG, "summer"), "B to hear A's change")
                # B answers with a marker of its own. Anything B echoed of A's message would
                # have been queued before it, and A hears its own messages from Redis before
                # the marker (A published first): once A has the marker, nothing more of
                # "summer" can be on its way.
                b.bus.publish(KEYS, "marker")
                await until(lambda: a.got(KEYS, "marker"), "A to hear B's marker")
                await until(lambda: len(tap.messages) >= 2, "both messages on the channel")
            finally:
                await a.relay.stop()
                await b.relay.stop()
            assert a.seen == [(SLUG, "summer"), (KEYS, "marker")]
            assert b.seen == [(SLUG, "summer"), (KEYS, "marker")]
            assert [(m["o"], m["t"], m["p"]) for m in tap.messages] == [
                (a.relay.origin, SLUG, "summer"),
                (b.relay.origin, KEYS, "marker"),
            ]
            assert a.relay.received == 1 and b.relay.received == 1

    asyncio.run(run())


def test_domain_events_are_not_relayed(prefix: str) -> None:
    """A side effect (group.succeeded → webhook, reward…) must run once, where it committed."""

    async def run() -> None:
        a, b = Process(prefix), Process(prefix)
        await a.relay.start()
        await b.relay.start()
        try:
            a.bus.publish("group.succeeded", {"group_id": "grp_1"})
            a.bus.publish(SLUG, "after")  # same queue, so it arrives after anything earlier
            await until(lambda: b.got(SLUG, "after"), "B to hear A's change")
        finally:
            await a.relay.stop()
            await b.relay.stop()
        assert b.seen == [(SLUG, "after")]
        assert a.seen == [("group.succeeded", {"group_id": "grp_1"}), (SLUG, "after")]

    asyncio.run(run())


def test_a_lost_subscription_resyncs_the_caches(prefix: str) -> None:
    """Messages sent while B was cut off are gone: B drops its caches when it is back."""
    proxy = TcpProxy()
    proxy.start()

    async def run() -> None:
        a = Process(prefix)
        b = Process(prefix, url=proxy.url, retry_delay=0.05)
        await a.relay.start()
        await b.relay.start()
        try:
            # B's first subscribe goes through the proxy and may time out on a loaded machine
            # (the listener then subscribes again in the background): a message published
            # before it is subscribed is gone by design, so say it again until B hears it.
            deadline = time.monotonic() + 20
            while not b.got(SLUG, "before"):
                if time.monotonic() > deadline:
                    pytest.fail("gave up waiting for B to hear the first change")
                a.bus.publish(SLUG, "before")
                await asyncio.sleep(0.2)
            proxy.stop()
            a.bus.publish(SLUG, "missed")
            await asyncio.sleep(0.2)  # let it go by while B is cut off (not a timing assertion)
            proxy.start()
            await until(lambda: b.got(RESYNC_TOPIC, None), "B to resync after reconnecting")
            a.bus.publish(SLUG, "after")
            await until(lambda: b.got(SLUG, "after"), "B to hear changes again")
        finally:
            await a.relay.stop()
            await b.relay.stop()
        assert b.relay.resyncs >= 1
        assert not a.got(RESYNC_TOPIC, None)

    try:
        asyncio.run(run())
    finally:
        proxy.stop()


def test_publishes_while_redis_is_unreachable_are_sent_later(prefix: str) -> None:
    proxy = TcpProxy()
    proxy.start()

    async def run() -> None:
        a = Process(prefix, url=proxy.url, retry_delay=0.05)
        b = Process(prefix)
        await a.relay.start()
        await b.relay.start()
        try:
            proxy.stop()
            a.bus.publish(SLUG, "during-outage")
            assert a.got(SLUG, "during-outage")  # local subscribers never wait for Redis
            await asyncio.sleep(0.2)
            proxy.start()
            await until(lambda: b.got(SLUG, "during-outage"), "the retried publish")
        finally:
            await a.relay.stop()
            await b.relay.stop()

    try:
        asyncio.run(run())
    finally:
        proxy.stop()


# -- two complete apps on one database ---------------------------------------------------


def _app_client(settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from liebian.app.factory import create_app
    from liebian.app.runtime import Runtime

    runtime = Runtime.build(settings)
    client = TestClient(
        create_app(settings, runtime), base_url="http://sho.rt", follow_redirects=False
    )
    return client, runtime


def test_two_server_processes_invalidate_each_others_caches(
    settings: Any, owner: dict[str, str], prefix: str, tmp_path: Any
) -> None:
    scale = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    settings_a = settings.model_copy(update={**scale, "data_dir": tmp_path / "a"})
    settings_b = settings.model_copy(update={**scale, "data_dir": tmp_path / "b"})
    client_a, runtime_a = _app_client(settings_a)
    client_b, runtime_b = _app_client(settings_b)
    try:
        with client_a as a, client_b as b:
            resp = a.post(
                "/api/v1/links",
                json={"slug": "moving", "url": "https://one.example/"},
                headers=owner,
            )
            assert resp.status_code == 201, resp.text
            link_id = resp.json()["id"]
            assert b.get("/moving").headers["location"].startswith("https://one.example/")

            # The slug cache: B has the link cached; A changes its destination.
            patched = a.patch(
                f"/api/v1/links/{link_id}", json={"url": "https://two.example/"}, headers=owner
            )
            assert patched.status_code == 200, patched.text
            wait_until(
                lambda: b.get("/moving").headers["location"].startswith("https://two.example/"),
                what="B's slug cache to drop the changed link",
            )

            # The key cache: B has authenticated a key; A revokes it.
            created = a.post("/api/v1/keys", json={"role": "viewer", "name": "tmp"}, headers=owner)
            assert created.status_code == 201, created.text
            temp = {"Authorization": f"Bearer {created.json()['key']}"}
            assert b.get("/api/v1/links", headers=temp).status_code == 200
            revoked = a.delete(f"/api/v1/keys/{created.json()['id']}", headers=owner)
            assert revoked.status_code == 200, revoked.text
            wait_until(
                lambda: b.get("/api/v1/links", headers=temp).status_code == 401,
                what="B's key cache to forget the revoked key",
            )
    finally:
        runtime_a.close()
        runtime_b.close()


def test_stop_returns_when_a_task_swallows_its_cancellation(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client library that swallows a cancellation (seen once: a test's stop waited for good
    under load) costs the stop a bounded wait and a warning, not a hang."""

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # swallowed, as a library may

    async def main() -> None:
        a = Process(prefix, timeout=0.2)
        await a.relay.start()
        a.relay._tasks.append(asyncio.create_task(stubborn()))
        await asyncio.sleep(0.05)  # it runs (a task cancelled before its start cannot refuse)
        await a.relay.stop()  # returns (the old stop awaited the task for good)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.get_coro().close()  # type: ignore[union-attr]  # the stubborn one, for good

    asyncio.run(main())
    assert "did not stop" in caplog.text
