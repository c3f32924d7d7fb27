"""Admission for analytics queries, per workspace (issue 9, decision 0040).

An analytics query over the event store takes a core for milliseconds to seconds (DuckDB gets
every core while one runs, events/store/duckdb_budget.py); the redirect and the participant
pages in the same process need a core the whole time. Unbounded, one script looping over
``/analytics/cac`` takes the redirect from ~20k to ~7k req/s (docs/benchmarks.md). So, per
workspace and process:

- at most ``concurrency`` queries run at once; up to ``queue`` more wait their turn on the
  event loop (a waiting request holds no worker thread and no database handle), in order;
- at most ``per_minute`` queries start per minute, bursts included (GCRA, kit/ratelimit.py);
- anything beyond is answered 429 with Retry-After and a message that says which limit.

The console makes one to three analytics requests per page, far below either limit; a BI
export that needs more sets ``LIEBIAN_ANALYTICS_PER_MINUTE``. All state lives on the event
loop (one coroutine at a time touches it), so no lock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from liebian.kit.errors import RateLimited
from liebian.kit.ratelimit import LocalLimiter, Rate
from liebian.kit.settings import Settings


class _Lane:
    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()


class AnalyticsAdmission:
    def __init__(self, *, concurrency: int, queue: int, per_minute: int) -> None:
        self.concurrency = max(1, concurrency)
        self.queue = max(0, queue)
        self.rate = Rate(per_minute, 60.0)
        self._limiter = LocalLimiter(max_keys=10_000)
        self._lanes: dict[str, _Lane] = {}
        self.refused = 0  # queries answered 429 (a metric)

    def _refuse(self, message: str, retry_after: float, code: str) -> RateLimited:
        self.refused += 1
        return RateLimited(message, code=code, retry_after=int(retry_after) + 1)

    def peek(self, workspace_id: str) -> RateLimited | None:
        """The 429 :meth:`slot` would raise now, without taking anything (for a refusal
        answered before the framework parses the query)."""
        if self.rate.enabled:
            wait = self._limiter.hit(workspace_id, self.rate, time.monotonic(), consume=False)
            if wait:
                return self._too_fast(wait)
        lane = self._lanes.get(workspace_id)
        if (
            lane is not None
            and lane.running >= self.concurrency
            and len(lane.waiting) >= self.queue
        ):
            return self._busy(lane)
        return None

    def _too_fast(self, wait: float) -> RateLimited:
        return self._refuse(
            f"this workspace started more than {self.rate.limit} analytics queries "
            "in the last minute; retry after the wait",
            wait,
            "analytics_rate_limited",
        )

    def _busy(self, lane: _Lane) -> RateLimited:
        return self._refuse(
            f"{lane.running} analytics queries of this workspace are running and "
            f"{len(lane.waiting)} are waiting; retry when one has finished",
            0,
            "analytics_busy",
        )

    @contextlib.asynccontextmanager
    async def slot(self, workspace_id: str) -> AsyncIterator[None]:
        """Hold one of the workspace's places for the length of a query, or raise 429."""
        if self.rate.enabled:
            wait = self._limiter.hit(workspace_id, self.rate, time.monotonic())
            if wait:
                raise self._too_fast(wait)
        lane = self._lanes.get(workspace_id)
        if lane is None:
            lane = self._lanes[workspace_id] = _Lane()
        if lane.running >= self.concurrency:
            if len(lane.waiting) >= self.queue:
                raise self._busy(lane)
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.waiting.append(turn)
            try:
                await turn  # the place is handed over by the query that ends (below)
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._release(workspace_id, lane)  # given a place, then cancelled
                else:
                    with contextlib.suppress(ValueError):
                        lane.waiting.remove(turn)
                raise
        else:
            lane.running += 1
        try:
            yield
        finally:
            self._release(workspace_id, lane)

    def _release(self, workspace_id: str, lane: _Lane) -> None:
        """Hand the place to the next waiter (running stays the same), or give it back."""
        while lane.waiting:
            turn = lane.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        lane.running -= 1
        if lane.running == 0 and self._lanes.get(workspace_id) is lane:
            del self._lanes[workspace_id]


def admission_for(extras: dict[str, Any], settings: Settings) -> AnalyticsAdmission:
    """The process's admission (made on first use from ``LIEBIAN_ANALYTICS_*``)."""
    admission = extras.get("analytics_admission")
    if not isinstance(admission, AnalyticsAdmission):
        admission = AnalyticsAdmission(
            concurrency=settings.analytics_concurrency,
            queue=settings.analytics_queue,
            per_minute=settings.analytics_per_minute,
        )
        extras["analytics_admission"] = admission
    return admission
