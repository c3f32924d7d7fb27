"""Large event batches parsed and checked in processes beside the server (decision 0058).

A 10,000-event batch costs the request thread ~4-5 µs an event of pure Python (orjson's parse,
the checks of ``service._plain_batch``, the completed lines), all of it holding the serving
process's GIL — which the event loop, the spool flusher and the hooks worker need as well.
Under a stream of such batches the GIL, not the cores, was the limit: the server used
~1.0-1.5 of 2 cores while the request threads waited for it (docs/benchmarks.md, session 13).

So a body of at least ``POOL_BYTES`` goes to one of a few processes (spawned, so no lock or
thread of the server is copied into them; each with its own pipe, preparing what it is sent
in order) that runs ``service.prepare`` on it and sends back the spool lines, the 202's body, and the
events a hooks consumer may want (``HookFilter``: a superset of what ``HookQueue.lines``
selects, computed from names alone). The serving process then does what must happen there,
in the same order as before the answer: the one write to the spool, the hooks selection and
its write (``service.commit``). Nothing is written by the pool's processes, so the death of
one loses nothing: the server sees the end of its pipe at once, prepares that body in the
request thread (``IngestPool.run`` returns None) and starts another process in the
background. (``concurrent.futures.ProcessPoolExecutor`` was tried first: with its process
SIGKILLed mid-request, requests could wait on their futures for good.)
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from liebian.events import service
from liebian.events.hooks import HookQueue
from liebian.events.schemas import EventIn
from liebian.kit.errors import DomainError

log = logging.getLogger("liebian.events")

# Below this a body is prepared in the request thread: the round trip to another process
# (~0.2-0.5 ms) would cost more than the work it moves (~1,000 events).
POOL_BYTES = 96 * 1024
# Seconds before a start that failed is tried again: RETRY_FIRST, doubling up to RETRY_START.
RETRY_FIRST = 2.0
RETRY_START = 60.0
# Bounds on waiting for a pool process: a new one must answer its warm-up within
# START_TIMEOUT (it imports liebian: ~1 s), and a body within REPLY_TIMEOUT (~0.05 s for
# 10,000 events). A process that does not is killed: its request, and those queued behind it,
# are prepared in the request threads, and another process starts. No request waits for good.
START_TIMEOUT = 60.0
REPLY_TIMEOUT = 60.0
# A tiny body each new process prepares once before it takes requests.
_WARM_UP = ("ws", b'[{"event":"warm_up"}]', datetime(2026, 1, 1, tzinfo=UTC), None, None)


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


def _serve(conn: Connection) -> None:
    """A pool process: prepare each request it is sent, in order, until the server closes
    the pipe (or dies: the same end of file)."""
    # What liebian's imports made lives as long as the process: out of the collector's way,
    # as in the serving process (Settings.gc_freeze), so that the ~10,000 dicts a batch
    # makes do not have the collector walk every module, schema and mapper again and again.
    gc.freeze()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:  # the server stops the pool
            return
        number, args = message
        try:
            reply: tuple[int, str, Any] = (number, "ok", prepare(*args))
        except DomainError as exc:
            reply = (number, "refused", exc)
        except Exception as exc:  # a bug: the server prepares the body itself and logs it
            reply = (number, "failed", f"{type(exc).__name__}: {exc}")
        conn.send(reply)
        del message, args, reply  # the batch's objects go now, not during the next one


class _Process:
    """One pool process and the server's end of its pipe. Requests are sent as they come
    (the next body waits in the pipe while the process prepares the one before: it is never
    idle between two) and a reader thread hands each reply to the request that waits for it.
    When the process dies the reader sees the end of the pipe and fails every waiting
    request at once: none waits for good."""

    def __init__(self, on_death: Callable[[_Process, BaseException], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child,), name="liebian-ingest", daemon=True
        )
        self.process.start()
        # Only the pool process holds the other end now: its death is an end of file here.
        child.close()
        self._on_death = on_death
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[tuple[str, Any]]] = {}
        self._numbers = itertools.count()
        self.dead: BaseException | None = None
        self._closed = False
        self._reader = threading.Thread(
            target=self._read, name="liebian-ingest-reader", daemon=True
        )
        self._reader.start()

    @property
    def load(self) -> int:
        return len(self._waiting)

    def submit(self, args: tuple[Any, ...]) -> Future[tuple[str, Any]]:
        future: Future[tuple[str, Any]] = Future()
        with self._lock:
            if self.dead is not None:
                raise EOFError("the ingest pool process is gone")
            number = next(self._numbers)
            self._waiting[number] = future
        try:
            with self._send_lock:
                self.conn.send((number, args))
        except OSError as exc:  # the process died (EPIPE): the reader fails the rest
            with self._lock:
                self._waiting.pop(number, None)
            raise EOFError("the ingest pool process is gone") from exc
        return future

    def _read(self) -> None:
        while True:
            try:
                number, kind, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                with self._lock:
                    self.dead = exc
                    waiting, self._waiting = self._waiting, {}
                for future in waiting.values():
                    future.set_exception(EOFError("the ingest pool process is gone"))
                self._on_death(self, exc)
                return
            with self._lock:
                future = self._waiting.pop(number)
            future.set_result((kind, value))

    def close(self) -> None:
        """End the process and the pipe. Idempotent: the pool's starter and the death of the
        process may both close it, at the same moment."""
        with self._lock:
            self.dead = self.dead or EOFError("closed")
            if self._closed:
                return
            self._closed = True
        try:
            with self._send_lock:
                self.conn.send(None)  # the process returns; the reader then sees the end
        except OSError:
            pass  # gone already
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()


class IngestPool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.restarts = 0  # pool processes started again after one died
        self.fallbacks = 0  # bodies prepared in the request thread because the pool failed
        self._live: list[_Process] = []
        self._lock = threading.Lock()
        self._stopped = False
        # The processes start with the first large body (``run``), in the background: a
        # server that is never sent one (redirects only, small events) never pays their
        # ~60 MB. One starter thread at a time brings the pool to ``processes`` live ones,
        # trying again with a growing pause while a start fails; a process that dies is
        # replaced the same way.
        self._starting = False
        self._wake = threading.Event()  # set by stop(): a starter's pause ends at once

    def start(self) -> None:
        """Start the processes now and wait until each has imported liebian and answered."""
        for _ in range(self.processes):
            self._add()

    def _begin_start(self) -> bool:
        """Start the starter thread unless one runs or the pool is stopped (under no lock)."""
        with self._lock:
            if self._starting or self._stopped:
                return False
            self._starting = True
        threading.Thread(target=self._fill, name="liebian-ingest-start", daemon=True).start()
        return True

    def _fill(self) -> None:
        pause = RETRY_FIRST
        try:
            while not self._stopped:
                with self._lock:
                    missing = self.processes - sum(p.dead is None for p in self._live)
                if missing <= 0:
                    return
                try:
                    for _ in range(missing):
                        self._add()
                except Exception as exc:  # the request threads prepare every body meanwhile
                    log.error("ingest pool did not start (%s); trying again in %.0f s", exc, pause)
                    if self._wake.wait(pause):
                        return
                    pause = min(pause * 2, RETRY_START)
        finally:
            with self._lock:
                self._starting = False

    def _add(self) -> None:
        process = _Process(self._died)
        try:
            kind, _ = process.submit(_WARM_UP).result(timeout=START_TIMEOUT)
        except TimeoutError:
            kind = f"no answer within {START_TIMEOUT:.0f} s"
        except EOFError:
            kind = "it died"
        if kind != "ok":
            process.close()
            raise RuntimeError(f"ingest pool process could not start: {kind}")
        with self._lock:
            if not self._stopped:
                self._live.append(process)
                return
        process.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.process.pid for p in self._live if p.process.pid is not None]

    def run(
        self,
        workspace_id: str,
        raw: bytes,
        now: datetime,
        key: str | None,
        wanted: HookFilter | None,
    ) -> Prepared | None:
        """The prepared request, or None when the pool could not prepare it (its process
        died; none is running; stopped): the caller prepares it. A refusal (Invalid,
        TooLarge) is raised as the pool process raised it."""
        with self._lock:
            live = [p for p in self._live if p.dead is None]
        if not live and self._begin_start():
            # The first large body (or the first since the pool lost its processes):
            # prepared here while the processes start for the next.
            return None
        if not live or self._stopped:
            self.fallbacks += 1
            return None
        process = min(live, key=lambda p: p.load)
        try:
            kind, value = process.submit((workspace_id, raw, now, key, wanted)).result(
                timeout=REPLY_TIMEOUT
            )
        except EOFError:
            self.fallbacks += 1
            return None
        except TimeoutError:
            self.fallbacks += 1
            log.error(
                "ingest pool process %s did not answer within %.0f s; killed, and the body "
                "prepared in-process",
                process.process.pid,
                REPLY_TIMEOUT,
            )
            process.process.kill()  # its reader sees the end of the pipe: another starts
            return None
        if kind == "ok":
            prepared: Prepared = value
            return prepared
        if kind == "refused":
            raise value
        self.fallbacks += 1
        log.error("ingest pool could not prepare a batch (%s); prepared in-process", value)
        return None

    def _died(self, dead: _Process, exc: BaseException) -> None:
        """Called by a process's reader when its pipe ended. A live one is forgotten and,
        unless the pool is stopping, replaced by the starter (it imports liebian for ~1 s;
        meanwhile large bodies are prepared in the request threads). One that died during
        its warm-up was never live: the starter that waits for it sees that and tries again."""
        with self._lock:
            if dead not in self._live:
                return
            self._live.remove(dead)
            if self._stopped:
                return
        log.warning("ingest pool process died (%s: %s); starting another", type(exc).__name__, exc)
        self.restarts += 1
        threading.Thread(target=dead.close, name="liebian-ingest-close", daemon=True).start()
        self._begin_start()

    def stop(self) -> None:
        self._wake.set()
        with self._lock:
            self._stopped = True
            processes, self._live = self._live, []
        for process in processes:
            process.close()
