"""Cache invalidations across server processes (scale mode): the bus relayed through Redis.

Every process keeps its own caches (slug cache, API key cache) and learns of changes through
its :class:`~liebian.kit.bus.LocalBus`. With ``LIEBIAN_REDIS_URL`` set, one
:class:`RedisBusRelay` per process joins the buses of all processes:

* a local publish of a relayed topic is queued (from whichever thread committed) and published
  on the Redis channel ``<prefix>bus`` as ``{"o": origin, "t": topic, "p": payload}``;
* a message on that channel from another origin is handed to local subscribers with
  :meth:`LocalBus.deliver`, which never reaches the relays, so nothing is echoed back; the
  process's own messages (Redis sends them back to it too) are dropped by origin.

Only invalidation topics are relayed (:data:`RELAYED_TOPICS`): a domain event such as
``group.succeeded`` must run its side effects in the process that committed it, once.

Redis pub/sub is at-most-once. What the relay does about it: a publish that fails is retried
until Redis answers (the queue is bounded; on overflow a resync marker is sent instead of the
lost messages), and when the subscription had to be re-established — messages may have been
missed meanwhile — the relay delivers :data:`RESYNC_TOPIC` locally, on which the caches drop
everything. The caches' own TTLs bound staleness if all of that fails too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import orjson

from liebian.kit.bus import LocalBus
from liebian.kit.redis_client import redis_asyncio, retries

log = logging.getLogger(__name__)

RELAYED_TOPICS: tuple[str, ...] = (
    "slug.changed",
    "api_key.revoked",
    "domains.changed",
    "campaign.changed",
)
# Delivered locally when this process may have missed relayed messages: drop whole caches.
RESYNC_TOPIC = "bus.resync"


class RedisBusRelay:
    """A background component (``start``/``stop``) relaying a bus through one Redis channel."""

    def __init__(
        self,
        bus: LocalBus,
        url: str,
        *,
        prefix: str = "lb:",
        topics: Iterable[str] = RELAYED_TOPICS,
        origin: str | None = None,
        max_pending: int = 10_000,
        timeout: float = 2.0,
        retry_delay: float = 0.5,
        ping_interval: float = 5.0,
    ) -> None:
        self.bus = bus
        self.url = url
        self.channel = prefix + "bus"
        self.topics = frozenset(topics)
        self.origin = origin or secrets.token_hex(8)
        self.max_pending = max_pending
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.ping_interval = ping_interval
        self.client: Any = None
        self.received = 0  # messages from other processes delivered here
        self.resyncs = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._overflowed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        aredis = redis_asyncio()
        self._loop = asyncio.get_running_loop()
        # No silent retries: a dropped subscription must be noticed (it may have lost messages).
        self.client = aredis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=retries(0),
        )
        # Subscribe before hooking into the bus, so the process starts serving only once it
        # hears the others (if Redis is down now, the listener keeps trying in the background).
        try:
            self._pubsub = await self._subscribe()
        except _errors() as exc:
            log.warning("bus relay: Redis unavailable at start (%s); retrying", exc)
        self._tasks = [
            asyncio.create_task(self._listen(), name="bus-relay-listen"),
            asyncio.create_task(self._send(), name="bus-relay-send"),
        ]
        self.bus.add_relay(self._on_local)

    async def stop(self) -> None:
        self.bus.remove_relay(self._on_local)
        # Give queued invalidations a moment to leave before the connection goes.
        if self._tasks and not self._queue.empty():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.timeout)
        # The loops end at their next turn and their tasks are cancelled; the wait for them is
        # bounded: a task whose cancellation a client library swallowed (seen once in a test
        # under load: the stop never returned) is cancelled again, then left with a warning.
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        pending: set[asyncio.Task[None]] = set(tasks)
        for _attempt in range(2):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=self.timeout)
        for task in tasks:
            if task.done() and not task.cancelled():
                with contextlib.suppress(*_errors()):
                    task.result()
        if pending:
            log.warning("bus relay: %d task(s) did not stop within %.1f s", len(pending),
                        2 * self.timeout)  # fmt: skip
        if self.client is not None:
            with contextlib.suppress(*_errors()):
                await self.client.aclose()
            self.client = None

    # -- outbound ---------------------------------------------------------------------------

    def _on_local(self, topic: str, payload: Any) -> None:
        """Called by :meth:`LocalBus.publish`, from any thread."""
        if topic not in self.topics or self._loop is None:
            return
        # RuntimeError: the loop is closed, the process is shutting down.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._enqueue, topic, payload)

    def _enqueue(self, topic: str, payload: Any) -> None:
        if self._queue.qsize() >= self.max_pending:
            self._overflowed = True
            return
        self._queue.put_nowait((topic, payload))

    async def _send(self) -> None:
        while not self._stopping:
            topic, payload = await self._queue.get()
            try:
                if self._overflowed:
                    # Messages were dropped: tell everyone to drop their caches instead.
                    self._overflowed = False
                    await self._publish(RESYNC_TOPIC, None)
                await self._publish(topic, payload)
            finally:
                self._queue.task_done()

    async def _publish(self, topic: str, payload: Any) -> None:
        try:
            data = orjson.dumps({"o": self.origin, "t": topic, "p": payload})
        except TypeError as exc:
            log.error("bus relay: %s payload is not JSON (%s); not relayed", topic, exc)
            return
        while not self._stopping:
            try:
                await self.client.publish(self.channel, data)
                return
            except _errors() as exc:
                log.warning("bus relay: publish failed (%s); retrying", exc)
                await asyncio.sleep(self.retry_delay)

    # -- inbound ----------------------------------------------------------------------------

    async def _subscribe(self) -> Any:
        """A pubsub subscribed to the channel: returned once Redis has confirmed the
        subscription, so a resync delivered after it covers every change Redis did not send us
        (before the confirmation, a PUBLISH from another process may still be dropped)."""
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            deadline = asyncio.get_running_loop().time() + 2 * self.ping_interval
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise ConnectionError("no confirmation of SUBSCRIBE")
                message = await pubsub.get_message(timeout=left)
                if message is not None and message.get("type") == "subscribe":
                    break
        except BaseException:
            with contextlib.suppress(*_errors()):
                await pubsub.aclose()
            raise
        return pubsub

    async def _listen(self) -> None:
        pubsub, missed = self._pubsub, self._pubsub is None
        self._pubsub = None
        while not self._stopping:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                if missed:
                    self.resyncs += 1
                    log.info("bus relay: resubscribed; dropping local caches (%s)", RESYNC_TOPIC)
                    self.bus.deliver(RESYNC_TOPIC, None)
                    missed = False
                await self._read(pubsub)
            except _errors() as exc:
                log.warning("bus relay: subscription lost (%s); resubscribing", exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*_errors()):
                        await pubsub.aclose()
                    pubsub = None
            missed = True
            await asyncio.sleep(self.retry_delay)

    async def _read(self, pubsub: Any) -> None:
        idle = 0.0
        waiting_pong = False
        while not self._stopping:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if message is None:
                idle += self.ping_interval
                if waiting_pong and idle >= 2 * self.ping_interval:
                    raise ConnectionError("no answer to PING")
                if not waiting_pong:
                    await pubsub.ping()
                    waiting_pong = True
                continue
            idle, waiting_pong = 0.0, False
            if message.get("type") == "message":
                self._handle(message["data"])

    def _handle(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            origin, topic, payload = body["o"], body["t"], body.get("p")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("bus relay: ignoring malformed message %r", data[:200])
            return
        if origin == self.origin:
            return  # our own publish, already delivered locally
        if topic != RESYNC_TOPIC and topic not in self.topics:
            return
        self.received += 1
        try:
            self.bus.deliver(topic, payload)
        except Exception:
            log.exception("bus relay: a subscriber of %s failed", topic)


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)
