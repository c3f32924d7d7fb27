"""Rate limits for the public endpoints: GCRA, in memory, or in Redis in scale mode.

GCRA (the generic cell rate algorithm) keeps one float per key: the "theoretical arrival
time" (TAT) of the next request. A rate of ``limit`` per ``period`` seconds lets a burst of
``limit`` through at once and then one every ``period / limit`` seconds. A check is a dict
lookup, two float operations and a store: cheap enough for the redirect's hot path
(docs/decisions/0015 has the measured cost).

Embedded: :class:`LocalLimiter`, one dict per process, pruned of keys whose TAT has passed
(they are back to a full burst, which is what a missing key means too).
Scale mode (``LIEBIAN_REDIS_URL``): :class:`RedisLimiter`, the same arithmetic in one Lua
script, so every process draws on one budget per key. Redis unreachable → fail open on the
local limiter (a process still limits what it sees), and Redis is left alone for
``retry_after`` seconds so an outage costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("liebian.ratelimit")
_EPSILON = 1e-6  # seconds: a wait below this is a floating-point rounding, not a wait


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds, a burst of ``limit`` allowed. ``limit`` 0
    turns the limit off."""

    limit: int
    period: float
    # period / limit, computed once (the hot path reads it per request)
    interval: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.limit > 0:
            object.__setattr__(self, "interval", self.period / self.limit)

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.period > 0


class LocalLimiter:
    def __init__(self, max_keys: int = 200_000) -> None:
        self._tat: dict[str, float] = {}
        self.max_keys = max_keys

    def hit(self, key: str, rate: Rate, now: float, *, consume: bool = True) -> float:
        """0.0 when the request may go ahead (and, with ``consume``, counts it), else the
        seconds until it would. ``consume=False`` only asks."""
        interval = rate.interval
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        wait = tat + interval - now - rate.period
        # Past a rounding error: with limit 1 (interval == period) a fresh key's wait is
        # (now + period) - now - period, a few 1e-12 above 0 for some clock values.
        if wait > _EPSILON:
            return wait
        if consume:
            if len(self._tat) >= self.max_keys and key not in self._tat:
                self._prune(now)
            self._tat[key] = tat + interval
        return 0.0

    def forget(self, key: str) -> None:
        self._tat.pop(key, None)

    def _prune(self, now: float) -> None:
        stale = [k for k, tat in self._tat.items() if tat <= now]
        for k in stale:
            del self._tat[k]
        if len(self._tat) >= self.max_keys:
            # Everyone is mid-burst (an attack over many keys): forget the oldest half rather
            # than grow without bound. Dicts keep insertion order.
            for k in list(self._tat)[: self.max_keys // 2]:
                del self._tat[k]


# KEYS[1] the key; ARGV: now, interval, period, consume (1/0), ttl. Returns the wait in ms
# (0: allowed). Same arithmetic as LocalLimiter.hit.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local wait = tat + interval - now - period
if wait > 0.000001 then return math.ceil(wait * 1000) end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', ARGV[5])
end
return 0
"""


class RedisLimiter:
    """One budget per key across processes; fails open on ``fallback`` when Redis fails."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lb:",
        fallback: LocalLimiter | None = None,
        timeout: float = 0.25,
        retry_after: float = 5.0,
    ) -> None:
        from liebian.kit.redis_client import redis_asyncio, retries

        self.prefix = prefix + "rl:"
        self.fallback = fallback or LocalLimiter()
        self.retry_after = retry_after
        self._down_until = 0.0
        self.last_error: BaseException | None = None
        self._client: Any = redis_asyncio().Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retries(0)
        )
        self._script: Any = self._client.register_script(_GCRA)

    async def hit(self, key: str, rate: Rate, now: float, *, consume: bool = True) -> float:
        if time.monotonic() >= self._down_until:
            try:
                waited_ms = await self._script(
                    keys=[self.prefix + key],
                    args=[
                        repr(now),
                        repr(rate.interval),
                        repr(rate.period),
                        "1" if consume else "0",
                        str(math.ceil(rate.period * 1000) + 1000),
                    ],
                )
                return int(waited_ms) / 1000
            except Exception as exc:  # down, timed out, refused: fail open below
                if self.last_error is None:
                    log.warning("rate limits fall back to this process (Redis: %s)", exc)
                self.last_error = exc
                self._down_until = time.monotonic() + self.retry_after
        return self.fallback.hit(key, rate, now, consume=consume)

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class PublicLimits:
    """The limits the public endpoints apply (from settings, ``LIEBIAN_RATE_*``)."""

    per_ip: Rate
    per_visitor: Rate
    password: Rate
    password_lockout: float


class Limiter:
    """What the public endpoints call: ``local`` always (sync, for the hot path), ``shared``
    in scale mode (awaitable, one Redis round trip)."""

    def __init__(self, limits: PublicLimits, redis_url: str = "", prefix: str = "lb:") -> None:
        self.limits = limits
        self.local = LocalLimiter()
        self.shared = (
            RedisLimiter(redis_url, prefix=prefix, fallback=self.local) if redis_url else None
        )
        self.refused = 0  # requests answered 429 (a metric)

    async def hit(self, key: str, rate: Rate, now: float, *, consume: bool = True) -> float:
        if not rate.enabled:
            return 0.0
        if self.shared is not None:
            wait = await self.shared.hit(key, rate, now, consume=consume)
        else:
            wait = self.local.hit(key, rate, now, consume=consume)
        if wait and consume:
            self.refused += 1
        return wait

    async def visit(self, ip: str, visitor_id: str | None, now: float) -> float:
        """Per IP, then per visitor (when the request carried one): 0.0, or seconds to wait."""
        limits = self.limits
        if ip and limits.per_ip.enabled:
            wait = await self.hit("ip:" + ip, limits.per_ip, now)
            if wait:
                return wait
        if visitor_id and limits.per_visitor.enabled:
            return await self.hit("v:" + visitor_id, limits.per_visitor, now)
        return 0.0

    def visit_local(self, ip: str, visitor_id: str | None, now: float) -> float:
        """:meth:`visit` without an await, for the embedded redirect (no Redis)."""
        limits = self.limits
        local = self.local
        if ip and limits.per_ip.limit > 0:
            wait = local.hit("ip:" + ip, limits.per_ip, now)
            if wait:
                self.refused += 1
                return wait
        if visitor_id and limits.per_visitor.limit > 0:
            wait = local.hit("v:" + visitor_id, limits.per_visitor, now)
            if wait:
                self.refused += 1
            return wait
        return 0.0


def limiter_for(settings: Any) -> Limiter:
    """The process's limiter from :class:`~liebian.kit.settings.Settings`."""
    period = settings.rate_limit_period
    return Limiter(
        PublicLimits(
            per_ip=Rate(settings.rate_limit_per_ip, period),
            per_visitor=Rate(settings.rate_limit_per_visitor, period),
            password=Rate(settings.password_max_failures, settings.password_lockout_seconds),
            password_lockout=settings.password_lockout_seconds,
        ),
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
    )


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
