"""Large event batches parsed and checked in processes beside the server (decision 0058).

A 10,000-event batch costs the request thread ~4-5 µs an event of pure Python (orjson's parse,
the checks of ``service._plain_batch``, the completed lines), all of it holding the serving
process's GIL — which the event loop, the spool flusher and the hooks worker need as well.
Under a stream of such batches the GIL, not the cores, was the limit: the server used ~1.2
of 2 cores while the request threads waited for it (docs/benchmarks.md, session 13).

So a body of at least ``POOL_BYTES`` goes to a small pool of processes (spawned, so no lock
or thread of the server is copied into them) that runs ``service.prepare`` on it and sends
back the spool lines, the 202's body, and the events a hooks consumer may want
(``HookFilter``: a superset of what ``HookQueue.lines`` selects, computed from names alone).
The serving process then does what must happen there, in the same order as before the
answer: the one write to the spool, the hooks selection and its write (``service.commit``).
Nothing is written by the pool's processes, so a crash of one loses nothing: the request is
prepared in the request thread instead (``IngestPool.run`` returns None) and the pool is
started again.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime

from liebian.events import service
from liebian.events.hooks import HookQueue
from liebian.events.schemas import EventIn

log = logging.getLogger("liebian.events")

# Below this a body is prepared in the request thread: the round trip to another process
# (~0.2-0.5 ms) would cost more than the work it moves (~1,000 events).
POOL_BYTES = 96 * 1024
# How long start() waits for the first process to answer (it imports liebian).
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class HookFilter:
    """What the request path's hooks selection looks at, as plain data: an event can be
    wanted only if its name is one a consumer names, or — when selecting consumers exist —
    it carries ``need`` (every selector is false without it; ``None``: any event)."""

    names: frozenset[str]
    selecting: bool
    need: str | None

    @classmethod
    def of(cls, hooks: HookQueue | None) -> HookFilter | None:
        if hooks is None:
            return None
        registry = hooks.registry
        return cls(registry.names, bool(registry.selectors), registry.selectors_need)

    def candidates(self, events: list[EventIn]) -> list[EventIn]:
        names = self.names
        if not self.selecting:
            return [e for e in events if e["event"] in names]
        need = self.need
        if need is None:
            return events
        return [e for e in events if e["event"] in names or e.get(need)]


@dataclass(frozen=True, slots=True)
class Prepared:
    line: bytes
    candidates: list[EventIn]
    payload: bytes


def prepare(
    workspace_id: str, raw: bytes, now: datetime, key: str | None, wanted: HookFilter | None
) -> Prepared:
    """Runs in a pool process: ``service.prepare`` and what the serving process needs of it."""
    accepted = service.prepare(workspace_id=workspace_id, raw=raw, now=now, idempotency_key=key)
    candidates = wanted.candidates(accepted.events) if wanted is not None else []
    return Prepared(accepted.line, candidates, accepted.payload())


def _ready() -> bool:
    return True


class IngestPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.restarts = 0  # times a broken pool was replaced
        self.fallbacks = 0  # bodies prepared in the request thread because the pool failed
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._stopped = False

    def start(self) -> None:
        executor = self._open()
        # Spawned processes import liebian first: wait for them here, at startup, rather
        # than in the first large request.
        for future in [executor.submit(_ready) for _ in range(self.processes)]:
            future.result(timeout=START_TIMEOUT)

    def _open(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.processes, mp_context=multiprocessing.get_context("spawn")
                )
            return self._executor

    def run(
        self,
        workspace_id: str,
        raw: bytes,
        now: datetime,
        key: str | None,
        wanted: HookFilter | None,
    ) -> Prepared | None:
        """The prepared request, or None when the pool could not prepare it (a process
        died; stopping): the caller prepares it itself. Domain errors (Invalid, TooLarge)
        are raised as they were in the pool process."""
        executor = self._executor
        if executor is None or self._stopped:
            return None
        try:
            future: Future[Prepared] = executor.submit(prepare, workspace_id, raw, now, key, wanted)
            return future.result()
        except (BrokenProcessPool, CancelledError, RuntimeError) as exc:
            # RuntimeError: submit after shutdown; CancelledError: the future was waiting in
            # a pool that another request thread found broken and shut down.
            self.fallbacks += 1
            self._replace(executor, exc)
            return None

    def _replace(self, broken: ProcessPoolExecutor, exc: BaseException) -> None:
        with self._lock:
            if self._executor is not broken or self._stopped:
                return  # replaced already by another request thread
            log.warning("ingest pool failed (%s: %s); starting it again", type(exc).__name__, exc)
            self._executor = None
            self.restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)
        self._open()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
