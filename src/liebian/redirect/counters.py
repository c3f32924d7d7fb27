"""``max_clicks`` without a database round trip.

Single process (the embedded default): a dict of link id → human clicks redirected so far,
seeded once per link from the event store (after flushing the spool, so clicks a killed
predecessor answered are counted) and incremented in the same synchronous step that decides
to redirect. With no ``await`` between check and increment, concurrent requests on the event
loop can never push a link past its limit.

Scale mode (``settings.redis_url``, the ``redis`` extra): the count lives in Redis under
``<prefix>clicks:<link id>``, seeded with ``SET NX`` from the same store count and spent with
one server-side script (``INCRBY`` + ``EXPIRE``), so every process draws from one budget and
two processes can never both take the last click. A key that has gone (expired after
:data:`KEY_TTL` idle seconds, evicted, Redis restarted without persistence) is re-seeded from
the store instead of silently restarting at zero.

Redis unreachable → **fail open** on the local count (docs/decisions/0006-scale-mode-redis.md):
the link keeps redirecting, each process enforcing the limit against the last shared value it
saw plus its own clicks since, so the overshoot is bounded by what the *other* processes let
through during the outage. Those offline clicks are owed to Redis and added with the first
successful call afterwards. After a failure the counter leaves Redis alone for
``retry_after`` seconds, so an outage costs one timeout, not one per redirect. ``last_error``
says what went wrong.

Only links that have ``max_clicks`` touch this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from liebian.kit.redis_client import redis_asyncio, retries
from liebian.redirect.cache import Entry

SeedFn = Callable[[str], int]
log = logging.getLogger(__name__)

# A counter key idle this long expires; the next click re-seeds it from the event store.
KEY_TTL = 30 * 24 * 3600

# KEYS[1] counter; ARGV[1] clicks to add; ARGV[2] seed ("" = do not seed); ARGV[3] ttl.
# Answers the new value, or nil when the key is missing and no seed was given.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[2])
end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return value
"""


class RedisUnavailable(Exception):
    """Redis could not answer (down, timed out, refused); the caller falls back."""


class ClickCounter:
    def __init__(
        self,
        seed: SeedFn,
        *,
        redis_url: str = "",
        prefix: str = "lb:",
        timeout: float = 0.5,
        retry_after: float = 5.0,
    ) -> None:
        self._seed_fn = seed
        self._counts: dict[str, int] = {}
        self._seeding: dict[str, asyncio.Future[None]] = {}
        # Clicks let through while Redis was unreachable, not yet added to the shared count.
        self._owed: dict[str, int] = {}
        self.redis = RedisClicks(redis_url, prefix=prefix, timeout=timeout) if redis_url else None
        self.retry_after = retry_after
        self._redis_down_until = 0.0
        self.last_error: BaseException | None = None

    def is_seeded(self, link_id: str) -> bool:
        return link_id in self._counts

    async def ensure_seeded(self, link_id: str) -> None:
        if link_id in self._counts:
            return
        pending = self._seeding.get(link_id)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seeding[link_id] = future
        try:
            count = await asyncio.to_thread(self._seed_fn, link_id)
            redis = self._redis()
            if redis is not None:
                try:
                    count = await redis.seed(link_id, count)
                except RedisUnavailable as exc:
                    self._redis_failed(exc)
            self._counts.setdefault(link_id, count)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._seeding.pop(link_id, None)

    def spent(self, entry: Entry) -> bool:
        """Early check (rule 4). The binding decision is :meth:`consume`."""
        limit = entry.max_clicks
        return limit is not None and self._counts.get(entry.id, 0) >= limit

    async def consume(self, entry: Entry) -> bool:
        """Take one click of the link's budget; False when none is left."""
        limit = entry.max_clicks
        if limit is None:
            return True
        redis = self._redis()
        if redis is not None:
            owed = self._owed.pop(entry.id, 0)
            try:
                value = await redis.take(entry.id, 1 + owed)
                if value is None:
                    count = await asyncio.to_thread(self._seed_fn, entry.id)
                    value = await redis.take(entry.id, 1 + owed, seed=count)
                    assert value is not None
            except RedisUnavailable as exc:
                if owed:
                    self._owed[entry.id] = self._owed.get(entry.id, 0) + owed
                self._redis_failed(exc)
            else:
                # Replies may arrive out of order: the local view only ever goes up.
                if value > self._counts.get(entry.id, 0):
                    self._counts[entry.id] = value
                return value <= limit
        current = self._counts.get(entry.id, 0)
        if current >= limit:
            return False
        self._counts[entry.id] = current + 1
        if self.redis is not None:
            self._owed[entry.id] = self._owed.get(entry.id, 0) + 1
        return True

    def forget(self, link_id: str) -> None:
        self._counts.pop(link_id, None)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def _redis(self) -> RedisClicks | None:
        if self.redis is None or time.monotonic() < self._redis_down_until:
            return None
        return self.redis

    def _redis_failed(self, exc: BaseException) -> None:
        # At most one line per ``retry_after``: Redis is left alone in between.
        log.warning("max_clicks: Redis unavailable, counting locally (%s)", exc)
        self.last_error = exc
        self._redis_down_until = time.monotonic() + self.retry_after


class RedisClicks:
    """The shared counters, through redis-py's asyncio client (a pool per process)."""

    def __init__(
        self, url: str, *, prefix: str = "lb:", timeout: float = 0.5, max_connections: int = 32
    ) -> None:
        aredis = redis_asyncio()
        self.prefix = prefix + "clicks:"
        # A burst of capped redirects waits (up to ``timeout``) for one of a few connections
        # instead of opening one each. One quick retry covers a pooled connection that went
        # stale (Redis restarted); more would turn an outage into seconds per redirect.
        pool = aredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=retries(1),
        )
        self.client: Any = aredis.Redis(connection_pool=pool)
        self._take = self.client.register_script(_TAKE)

    async def seed(self, link_id: str, count: int) -> int:
        """Set the count unless another process already did; the shared value."""
        key = self.prefix + link_id
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(key, count, nx=True, ex=KEY_TTL)
                pipe.get(key)
                _, value = await pipe.execute()
        except _errors() as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        return int(value) if value is not None else count

    async def take(self, link_id: str, clicks: int, *, seed: int | None = None) -> int | None:
        """Add ``clicks``; the new value, or None when the key is gone and no seed was given."""
        try:
            value = await self._take(
                keys=[self.prefix + link_id],
                args=[clicks, "" if seed is None else seed, KEY_TTL],
            )
        except _errors() as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        return None if value is None else int(value)

    async def aclose(self) -> None:
        await self.client.aclose()


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)
