"""``max_clicks`` without a database round trip.

Single process (the embedded default): a dict of link id → human clicks redirected so far,
seeded once per link from the event store (after flushing the spool, so clicks a killed
predecessor answered are counted) and incremented in the same synchronous step that decides
to redirect. With no ``await`` between check and increment, concurrent requests on the event
loop can never push a link past its limit.

Scale mode (``settings.redis_url``): the count lives in Redis under ``lb:clicks:<link id>``,
seeded with ``SET NX`` from the same store count and spent with ``INCR`` — atomic across
processes. If Redis is unreachable the counter falls back to the local count (availability over
a possible overshoot of a few clicks), and says so in ``last_error``.

Only links that have ``max_clicks`` touch this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

from liebian.redirect.cache import Entry

SeedFn = Callable[[str], int]


class ClickCounter:
    def __init__(self, seed: SeedFn, *, redis_url: str = "") -> None:
        self._seed_fn = seed
        self._counts: dict[str, int] = {}
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self.redis = RedisCounter(redis_url) if redis_url else None
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
            if self.redis is not None:
                try:
                    await self.redis.seed(link_id, count)
                except (OSError, RedisError) as exc:
                    self.last_error = exc
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
        if self.redis is not None:
            try:
                value = await self.redis.incr(entry.id)
                self._counts[entry.id] = value
                return value <= limit
            except (OSError, RedisError) as exc:
                self.last_error = exc
        current = self._counts.get(entry.id, 0)
        if current >= limit:
            return False
        self._counts[entry.id] = current + 1
        return True

    def forget(self, link_id: str) -> None:
        self._counts.pop(link_id, None)


class RedisError(Exception):
    pass


class RedisCounter:
    """The two commands we need over RESP2, on one connection (requests serialized by a lock).

    The redis client library is not a dependency; INCR and SET NX do not justify one.
    """

    def __init__(self, url: str, *, prefix: str = "lb:clicks:", timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = parts.password
        self.db = int(parts.path.strip("/") or 0)
        self.prefix = prefix
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._reader, self._writer = reader, writer
        if self.password:
            await self._roundtrip(reader, writer, "AUTH", self.password)
        if self.db:
            await self._roundtrip(reader, writer, "SELECT", str(self.db))
        return reader, writer

    @staticmethod
    async def _roundtrip(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *args: str
    ) -> int | str | None:
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            raw = arg.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        writer.write(b"".join(out))
        await writer.drain()
        line = await reader.readline()
        if not line:
            raise RedisError("connection closed")
        kind, body = line[:1], line[1:-2].decode()
        if kind == b"-":
            raise RedisError(body)
        if kind == b":":
            return int(body)
        if kind == b"+":
            return body
        if kind == b"$":
            if body == "-1":
                return None
            data = await reader.readexactly(int(body) + 2)
            return data[:-2].decode()
        raise RedisError(f"unexpected reply {line!r}")

    async def command(self, *args: str) -> int | str | None:
        async with self._lock:
            try:
                if self._reader is None or self._writer is None:
                    reader, writer = await asyncio.wait_for(self._connect(), self.timeout)
                else:
                    reader, writer = self._reader, self._writer
                return await asyncio.wait_for(self._roundtrip(reader, writer, *args), self.timeout)
            except (OSError, RedisError, TimeoutError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise RedisError(str(exc) or type(exc).__name__) from exc

    async def seed(self, link_id: str, count: int) -> None:
        await self.command("SET", self.prefix + link_id, str(count), "NX")

    async def incr(self, link_id: str) -> int:
        value = await self.command("INCR", self.prefix + link_id)
        if not isinstance(value, int):
            raise RedisError(f"INCR answered {value!r}")
        return value

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
