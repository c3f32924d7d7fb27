"""The embedded DuckDB's share of a serving process: small between analytics queries, the
machine's while one runs.

By default DuckDB takes one thread per core and 80% of RAM for its buffer pool. In the process
that also answers redirects, the flusher's load every second would then grow it by ~100 MB and
compete with the event loop for both cores (the redirect's p99 and its 300 MB budget,
docs/benchmarks.md). So between queries the pool is small (96 MB) and DuckDB has one thread.

An operator's analytics query is the other case: a by-channel funnel over 10M events needs a
few hundred MB of buffers; squeezed into 96 MB it spills to disk and takes 2.2 s instead of
0.9 s (measured, docs/benchmarks.md). While at least one analytics query runs, DuckDB gets
every core and ``query_memory_mb`` — only the memory while the process answers a burst of
redirects or pages (``serving_first``); when the last one ends, the small budget comes back and
DuckDB evicts down to it (resident memory returns to ~the pool size).

Settings are per database instance, so they are counted, not nested: the first query in raises
them, the last one out lowers them. A lowering that DuckDB refuses (buffers still pinned by a
concurrent load) is retried shortly after, so the budget never stays raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

import duckdb

log = logging.getLogger("liebian.events")

IDLE_THREADS = 1
IDLE_MEMORY_MB = 96
_RETRY_SECONDS = 1.0


class DuckDBBudget:
    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        *,
        query_memory_mb: int,
        query_threads: int | None = None,
        idle_threads: int = IDLE_THREADS,
        idle_memory_mb: int = IDLE_MEMORY_MB,
        serving_first: Callable[[], bool] | None = None,
    ) -> None:
        self._cursor = cursor
        self.idle = (idle_threads, idle_memory_mb)
        self.busy = (query_threads or os.cpu_count() or 1, max(query_memory_mb, idle_memory_mb))
        # While this says the process is answering a burst (redirects, participant pages),
        # a query that raises the budget gets its memory but keeps the idle thread count: it
        # runs on the calling thread instead of taking every core from the burst (decision 0046).
        self.serving_first = serving_first
        self.held_back = 0  # queries started with the idle thread count during a burst
        self._lock = threading.Lock()
        self._running = 0

    def _set(self, threads: int, memory_mb: int) -> None:
        cur = self._cursor()
        try:
            # Memory first when lowering, so DuckDB evicts before losing the second thread.
            cur.execute(f"SET memory_limit = '{int(memory_mb)}MB'")
            cur.execute(f"SET threads = {int(threads)}")
        finally:
            cur.close()

    def apply_idle(self) -> None:
        with self._lock:
            if self._running == 0:
                self._lower()

    @contextlib.contextmanager
    def analytics(self) -> Iterator[None]:
        """Hold the larger budget for the duration of one analytics query."""
        with self._lock:
            if self._running == 0:
                threads, memory_mb = self.busy
                if self.serving_first is not None and self.serving_first():
                    threads = self.idle[0]
                    self.held_back += 1
                self._set(threads, memory_mb)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._lower()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Hold the larger budget for one large load of the spool, unless the process is
        answering a burst (then the load keeps the idle budget, as before)."""
        if self.serving_first is not None and self.serving_first():
            yield
            return
        with self.analytics():
            yield

    def _lower(self) -> None:
        # Called with the lock held and no query running.
        try:
            self._set(*self.idle)
        except duckdb.Error as exc:
            log.warning("DuckDB kept its analytics budget (%s); retrying", exc)
            timer = threading.Timer(_RETRY_SECONDS, self.apply_idle)
            timer.daemon = True
            timer.start()

    def current(self) -> tuple[int, int]:
        """(threads, memory limit in MB) as DuckDB reports them, for tests and diagnostics."""
        cur = self._cursor()
        try:
            row = cur.execute(
                "SELECT current_setting('threads'), current_setting('memory_limit')"
            ).fetchone()
        finally:
            cur.close()
        assert row is not None
        threads, memory = row
        return int(threads), _megabytes(str(memory))


def _megabytes(text: str) -> int:
    """DuckDB's memory_limit display ('91.5 MiB', '610.3 MiB', '1.2 GiB') in whole MB (10^6)."""
    number, unit = text.split()
    factor = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
    return round(float(number) * factor[unit] / 1000**2)
