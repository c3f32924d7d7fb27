"""What an operator and a load balancer see: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz``: the process answers (liveness; nothing checked).
- ``/readyz``: 200 when this process can take traffic, 503 with the reasons when not: the
  OLTP database does not answer, the spool refuses writes (disk full), or events have waited
  in the spool longer than ``ready_max_backlog_seconds`` while the flusher fails. Quarantined
  segments and late jobs are reported as warnings: serving is not affected by them.
- ``/metrics``: the same figures for Prometheus, plus request counts and latency histograms
  by route class and status. Open to a request bearing ``LIEBIAN_METRICS_TOKEN``, or, when no
  token is set, to direct loopback requests only (docs/decisions/0015).

Everything here is read at request/scrape time from the components' own counters, so serving
pays nothing for it except :class:`RequestStats` (a few dict and list operations on the event
loop thread per request).
"""

from __future__ import annotations

import bisect
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import text

from liebian.app.errors import error_body
from liebian.app.runtime import Runtime

DATABASE_TIMEOUT: Final = 2.0
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})

# -- request statistics ---------------------------------------------------------------------

# Seconds; the redirect's target (p99 ≤ 5 ms) falls between two bounds.
BOUNDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestStats:
    """Counts and latency buckets per (route class, status).

    Only the event loop thread writes (the dispatcher observes every request there), so no
    lock; a scrape copies the figures, and a count read mid-update is at most one behind.
    """

    def __init__(self) -> None:
        # (route class, status) -> [count, sum of seconds, per-bucket counts (not cumulative)]
        self.series: dict[tuple[str, int], list[Any]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        entry = self.series.get((route, status))
        if entry is None:
            entry = self.series[(route, status)] = [0, 0.0, [0] * (len(BOUNDS) + 1)]
        entry[0] += 1
        entry[1] += seconds
        entry[2][bisect.bisect_left(BOUNDS, seconds)] += 1


def route_class(path: str) -> str:
    """A handful of classes, never the raw path (unbounded label values)."""
    if path.startswith("/api/"):
        return "api"
    if path.startswith(("/p/", "/g/", "/a/")):
        return "page"
    if path in ("/collect", "/t.js"):
        return "collect"
    if path.startswith("/admin"):
        return "console"
    if path in ("/healthz", "/readyz", "/metrics"):
        return "health"
    return "other"


# -- readiness ------------------------------------------------------------------------------


@dataclass
class Readiness:
    ready: bool
    reasons: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def database_reachable(runtime: Runtime, timeout: float = DATABASE_TIMEOUT) -> str | None:
    """None when ``SELECT 1`` answers within ``timeout``, else why not. Run in a thread of its
    own: a database that does not answer (a cut network) must not hold the probe."""
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            # A read-only session: on SQLite it never waits for the writer lock (decision 0013).
            with runtime.read_sessions() as session:
                session.execute(text("SELECT 1"))
            outcome.append(None)
        except Exception as exc:
            outcome.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    worker = threading.Thread(target=probe, name="liebian-readyz-db", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def readiness(runtime: Runtime) -> Readiness:
    settings = runtime.settings
    result = Readiness(ready=True)
    figures = result.figures

    def fail(code: str, message: str) -> None:
        result.ready = False
        result.reasons.append({"code": code, "message": message})

    def warn(code: str, message: str) -> None:
        result.warnings.append({"code": code, "message": message})

    problem = database_reachable(runtime)
    figures["database_up"] = problem is None
    if problem is not None:
        fail("database_unreachable", f"the OLTP database does not answer: {problem}")

    spool = runtime.spool
    flusher = runtime.extras.get("flusher")
    if spool is not None:
        health = spool.health()
        figures.update(
            spool_segments=health.sealed_segments,
            spool_backlog_bytes=health.backlog_bytes,
            spool_oldest_seconds=health.oldest_age,
            spool_quarantined_segments=health.quarantined_segments,
            spool_write_errors=health.write_errors,
            spool_last_error=health.last_error,
        )
        since = spool.last_write_error_at
        if since is not None and time.monotonic() - since < settings.ready_write_error_seconds:
            fail("spool_write_failing", "the spool refused a write recently (disk full?)")
        flush_error = flusher.last_error if flusher is not None else None
        figures["flush_last_error"] = (
            f"{type(flush_error).__name__}: {flush_error}" if flush_error is not None else None
        )
        oldest = health.oldest_age or 0.0
        if (flush_error is not None or health.last_error) and (
            oldest > settings.ready_max_backlog_seconds
        ):
            fail(
                "events_stalled",
                f"events have waited {oldest:.0f} s in the spool and loading fails:"
                f" {figures['flush_last_error'] or health.last_error}",
            )
        if health.quarantined_segments:
            warn(
                "spool_quarantined",
                f"{health.quarantined_segments} damaged spool segment(s) set aside in"
                f" {spool.directory / 'quarantine'}; their good lines were loaded",
            )
    if flusher is not None and not flusher._thread.is_alive() and not flusher._stop.is_set():
        fail("flusher_stopped", "the spool flusher thread is not running")

    scheduler = runtime.extras.get("scheduler")
    if scheduler is not None:
        lag = scheduler.lag()
        figures["job_lag_seconds"] = lag
        for job in scheduler.jobs:
            if lag.get(job.name, 0.0) > max(60.0, 10 * job.interval):
                warn("job_late", f"job {job.name} is {lag[job.name]:.0f} s overdue")
        if not scheduler.alive():
            fail("scheduler_stopped", "the job scheduler thread is not running")
    return result


# -- Prometheus -----------------------------------------------------------------------------


class LiebianCollector(Collector):
    def __init__(self, runtime: Runtime, stats: RequestStats) -> None:
        self.runtime = runtime
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        state = readiness(self.runtime)
        figures = state.figures

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=float(value or 0))

        yield gauge("liebian_ready", "1 when /readyz answers 200", 1 if state.ready else 0)
        yield gauge("liebian_database_up", "OLTP database answers SELECT 1", figures["database_up"])
        yield gauge(
            "liebian_spool_segments", "sealed spool segments waiting", figures.get("spool_segments")
        )
        yield gauge(
            "liebian_spool_backlog_bytes",
            "bytes of events in the spool",
            figures.get("spool_backlog_bytes"),
        )
        yield gauge(
            "liebian_spool_oldest_seconds",
            "age of the oldest waiting spool segment's first event",
            figures.get("spool_oldest_seconds"),
        )
        yield gauge(
            "liebian_spool_quarantined_segments",
            "damaged segments set aside in spool/quarantine",
            figures.get("spool_quarantined_segments"),
        )
        spool = self.runtime.spool
        yield CounterMetricFamily(
            "liebian_spool_write_errors",
            "spool writes refused (disk full): their requests got 503",
            value=spool.write_errors if spool else 0,
        )
        yield CounterMetricFamily(
            "liebian_spool_quarantined",
            "segments quarantined by this process",
            value=spool.quarantined_total if spool else 0,
        )
        flusher = self.runtime.extras.get("flusher")
        yield CounterMetricFamily(
            "liebian_flush_failures",
            "flusher ticks that failed",
            value=flusher.failed_ticks if flusher else 0,
        )
        yield gauge(
            "liebian_flush_failing",
            "1 while the last flusher tick failed",
            1 if figures.get("flush_last_error") else 0,
        )
        limiter = self.runtime.extras.get("limiter")
        yield CounterMetricFamily(
            "liebian_rate_limited",
            "public requests answered 429 (per IP or visitor limits, password lockouts)",
            value=limiter.refused if limiter is not None else 0,
        )
        keys = self.runtime.extras.get("key_cache")
        yield CounterMetricFamily(
            "liebian_wrong_key_throttled",
            "API requests answered 429 because their address sent too many wrong keys",
            value=keys.throttled_count if keys is not None else 0,
        )
        admission = self.runtime.extras.get("analytics_admission")
        yield CounterMetricFamily(
            "liebian_analytics_refused",
            "analytics queries answered 429 (the workspace's rate or places were used up)",
            value=admission.refused if admission is not None else 0,
        )
        pool = self.runtime.extras.get("ingest_pool")
        yield CounterMetricFamily(
            "liebian_ingest_pool_fallbacks",
            "large event batches prepared in the request thread because the pool failed",
            value=pool.fallbacks if pool is not None else 0,
        )
        yield CounterMetricFamily(
            "liebian_ingest_pool_restarts",
            "times the ingest pool was started again after a process of it died",
            value=pool.restarts if pool is not None else 0,
        )
        yield GaugeMetricFamily(
            "liebian_ingest_pool_processes",
            "ingest pool processes ready to prepare large event batches",
            value=len(pool.pids()) if pool is not None else 0,
        )
        lag = GaugeMetricFamily(
            "liebian_job_lag_seconds", "seconds a periodic job is overdue", labels=["job"]
        )
        for job, seconds in (figures.get("job_lag_seconds") or {}).items():
            lag.add_metric([job], seconds)
        yield lag
        yield from self._requests()

    def _requests(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "liebian_http_request_duration_seconds",
            "time to answer, by route class and status",
            labels=["route", "status"],
        )
        for (route, status), (count, total, buckets) in list(self.stats.series.items()):
            cumulative, running = [], 0
            for bound, n in zip((*BOUNDS, float("inf")), list(buckets), strict=True):
                running += n
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            # The +Inf bucket must equal the count; a request observed mid-copy is dropped.
            cumulative[-1] = ("+Inf", count)
            histogram.add_metric([route, str(status)], cumulative, sum_value=total)
        yield histogram


# -- routes ---------------------------------------------------------------------------------


class ReadyzReply(BaseModel):
    status: str
    reasons: list[dict[str, str]]
    warnings: list[dict[str, str]]
    figures: dict[str, Any]


def _trusted_caller(request: Request, token: str) -> bool:
    """A request bearing the token, or (no token set) a direct one from the loopback."""
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)
    client = request.client.host if request.client else ""
    proxied = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    return client in _LOOPBACK and not proxied


def build_router(runtime: Runtime, stats: RequestStats) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiebianCollector(runtime, stats))

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        # A coroutine: a constant answer needs no worker thread (a probe every few
        # seconds from each load balancer otherwise costs a thread hand-off each).
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz(request: Request) -> Response:
        state = readiness(runtime)
        detailed = _trusted_caller(request, runtime.settings.metrics_token)
        body = ReadyzReply(
            status="ready" if state.ready else "not_ready",
            reasons=state.reasons if detailed else [{"code": r["code"]} for r in state.reasons],
            warnings=state.warnings if detailed else [],
            figures=state.figures if detailed else {},
        )
        headers = {"cache-control": "no-store"}
        if not state.ready:
            headers["retry-after"] = "5"
        return Response(
            body.model_dump_json(),
            status_code=200 if state.ready else 503,
            media_type="application/json",
            headers=headers,
        )

    @router.get("/metrics")
    def metrics(request: Request) -> Response:
        if not _trusted_caller(request, runtime.settings.metrics_token):
            return Response(
                orjson.dumps(
                    error_body(
                        "forbidden",
                        "/metrics is open to the loopback interface only; from elsewhere send"
                        " 'Authorization: Bearer <LIEBIAN_METRICS_TOKEN>'",
                    )
                ),
                status_code=403,
                media_type="application/json",
            )
        return Response(
            generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return router
