"""The durable executor: claims due steps, does their effect once, moves each run on.

One batch is three phases:

1. **claim** (a short write transaction): up to ``batch`` due ``pending`` rows of live
   journeys whose lease is free get a claim token, a lease and ``attempts + 1`` — the record,
   committed before any effect, that an attempt started (``repository.claim``; ``FOR UPDATE
   SKIP LOCKED`` on PostgreSQL so several workers share the work).
2. **outside effects**, with no transaction open: webhook POSTs (header ``Idempotency-Key:
   <run id>:<step id>``, the same on every retry, so a receiver can tell a retry after a
   crash from a new message) and ``channels.service.send`` (which records and dedupes by the
   same key itself). Conditions (exit, branch) are evaluated here too, set-based per step.
3. **mark** (one write transaction, a savepoint per step): database effects (tags,
   attributes, a reward grant keyed ``journey:<run>:<step>``, an enrolment), then the row is
   marked done by its token holder only, and the next step's row is inserted (unique on
   (run, step), so it exists once) — or the run is finished.

A worker killed after 1 leaves rows whose lease expires; whoever claims them next does the
effect again with the same idempotency key. A worker killed after 3 lost nothing. The clock
is injectable: tests and the benchmark drive time without sleeping.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import SimpleQueue
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from liebian.automation import definition as d
from liebian.automation import repository
from liebian.automation.content import MissingField, linked_slugs, render, render_content
from liebian.automation.models import Journey
from liebian.automation.webhook_http import PinnedPoster
from liebian.kit.clock import utcnow
from liebian.kit.db import after_commit, session_scope
from liebian.kit.errors import DomainError
from liebian.kit.ids import new_id, ulid

log = logging.getLogger("liebian.automation")
USER_AGENT = "liebian-journeys/1"
# Outside effects are marked in groups of MARK_EVERY as they finish, and at most IN_FLIGHT are
# started and not yet marked at any moment: the most a SIGKILL can leave delivered but
# unmarked, to be resent with the same key (decision 0024). Measured (bench_journeys, 5,000
# people, same minute, load ~6): 8/4 → 1,280 steps/s, 422 µs CPU a step; 16/8 → 2,179/s,
# 325 µs; 24/8 (session 5) → 1,875/s, 334 µs. Groups of 8 halve the mark transactions.
MARK_EVERY = 8
IN_FLIGHT = 16
EFFECT_THREADS = 8
RETRY_THREADS = 2
# PostgreSQL: how often an executor thread gives back the claims of executors whose process
# is gone (decision 0043) — the most a killed worker's claimed steps wait, beside the batch.
REAP_EVERY = 0.25
# PostgreSQL: executor loops per process when ExecutorConfig.lanes is 0 (the settings'
# default). One loop spends most of its time waiting on round trips and commit flushes, in
# series; a second one fills those waits (decision 0048).
LANES_POSTGRESQL = 2


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    batch: int = 500
    lease: timedelta = timedelta(seconds=60)
    max_attempts: int = 5
    retry_backoff: timedelta = timedelta(seconds=60)
    http_timeout: float = 10.0
    allow_private: bool = False
    effect_threads: int = EFFECT_THREADS
    # At most this many effects started and not yet marked (see IN_FLIGHT), marked in groups
    # of mark_every.
    in_flight: int = IN_FLIGHT
    mark_every: int = MARK_EVERY
    # Steps given back after a failed try run in a pool of their own, outside the batch, so a
    # receiver that keeps failing slowly (a 10 s timeout each) never holds up the batch's
    # other steps (decision 0034). 0: in the batch, like the rest.
    retry_threads: int = RETRY_THREADS
    # PostgreSQL: give back a gone worker's claims at once (decision 0043); off behind a
    # transaction-pooling proxy, where a connection does not show a worker's liveness.
    release_dead_claims: bool = True
    # Executor loops an ExecutorThread runs, each an Executor of its own (its own claim
    # tokens, connection and effect window); 0: LANES_POSTGRESQL on PostgreSQL, 1 on SQLite
    # (decision 0048).
    lanes: int = 1


@dataclass
class _Item:
    execution_id: str
    run_id: str
    step_id: str
    attempts: int
    event_matched: bool
    token: str
    run: repository.RunRef | None = None
    step: dict[str, Any] | None = None
    following: str | None = None
    definition: dict[str, Any] | None = None
    # The decision: (status, result, next step or END, next due, detail).
    status: str = "done"
    result: str = ""
    next_step: str | None = None
    next_due: datetime | None = None
    detail: dict[str, Any] | None = None
    exit_reason: str | None = None
    retry_at: datetime | None = None
    # The claim's lease ran (nearly) out before the effect began: left for the next claim.
    abandoned: bool = False
    # Given back after a failed try before this claim (its result says "retry: …").
    retrying: bool = False


@dataclass
class BatchResult:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    postponed: int = 0
    lost: int = 0
    # Given to the retry pool (decision 0034): marked there, not in this batch's counts.
    retried: int = 0
    by_result: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Writes:
    marks: list[dict[str, Any]] = field(default_factory=list)
    next_rows: list[dict[str, Any]] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)
    finished: list[tuple[str, str, str | None]] = field(default_factory=list)


def _acts(item: _Item) -> bool:
    """Whether marking this item applies database actions (``Executor._apply_all``)."""
    return (
        item.status == "done" and item.step is not None
        and item.step["type"] not in d.EXTERNAL and item.step["type"] not in d.WAITS + d.FLOW
    )  # fmt: skip


class _Window:
    """Effects started and not yet marked, counted across the lanes of one process (the
    executors an ``ExecutorThread`` runs share one): at most ``size`` — the most a SIGKILL of
    the process can leave delivered but unmarked, whatever the number of lanes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._cond = threading.Condition()

    def take(self, n: int, *, block: bool) -> bool:
        with self._cond:
            while self.used + n > self.size:
                if not block:
                    return False
                self._cond.wait(0.05)
            self.used += n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


class _EffectPool:
    """Threads that run effect units, each reporting ``(unit, exception or None)`` on the
    queue its unit came with. One queue put and get per effect where a
    ``ThreadPoolExecutor`` made a ``Future`` (with its ``Condition``), a work item, a done
    callback and a round of its locks per submit: ~a tenth of a PostgreSQL worker's GIL
    time went to that machinery (decision 0054). Threads start on demand up to ``size``."""

    def __init__(self, run: Callable[..., None], size: int, name: str) -> None:
        self._run_unit = run
        self._size = max(1, size)
        self._name = name
        self._jobs: SimpleQueue[tuple[Any, ...] | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, reply: SimpleQueue[Any], unit: list[_Item], *args: Any) -> None:
        if len(self._threads) < self._size:
            with self._lock:
                if len(self._threads) < self._size:
                    thread = threading.Thread(target=self._work, daemon=True,
                                              name=f"{self._name}_{len(self._threads)}")  # fmt: skip
                    self._threads.append(thread)
                    thread.start()
        self._jobs.put((reply, unit, args))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            reply, unit, args = job
            try:
                self._run_unit(unit, *args)
            except BaseException as exc:
                reply.put((unit, exc))
            else:
                reply.put((unit, None))

    def shutdown(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()


class _Reader:
    """A read session opened on first use and closed by the batch."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._session: Session | None = None

    def __call__(self) -> Session:
        if self._session is None:
            self._session = self._factory()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


@functools.lru_cache(maxsize=1024)
def _slugs_of(text: str) -> frozenset[str]:
    return frozenset(linked_slugs(text))


class Executor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
        config: ExecutorConfig | None = None,
        runtime: Any = None,
        event_store: Any = None,
    ) -> None:
        self.sessions = sessions
        # Reads (runs, conditions, template context) never take SQLite's writer lock.
        self.read_sessions: sessionmaker[Session] = (
            runtime.read_sessions if runtime is not None else sessions
        )
        self.clock = clock
        self.config = config or ExecutorConfig()
        self.runtime = runtime
        self.event_store = (
            event_store
            if event_store is not None
            else (runtime.event_store if runtime is not None else None)
        )
        self.http = PinnedPoster(timeout=self.config.http_timeout,
                                 allow_all=self.config.allow_private)  # fmt: skip
        self._pool = _EffectPool(self._unit, self.config.effect_threads, "liebian-journey-effects")
        # Marks of finished effects, one group at a time, while the next effects run.
        self._marker = ThreadPoolExecutor(1, "liebian-journey-marks")
        self._window = _Window(max(self.config.in_flight, self.config.mark_every))
        self._definitions: dict[tuple[str, int], dict[str, Any]] = {}
        self._step_maps: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._zones: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._context: dict[str, dict[str, Any]] = {}
        self._retry_pool = (
            ThreadPoolExecutor(self.config.retry_threads, "liebian-journey-retries")
            if self.config.retry_threads > 0
            else None
        )
        self._retries: set[Future[None]] = set()
        self._retries_lock = threading.Lock()
        # PostgreSQL: marks of steps without database actions go through one connection of
        # the executor's own (decision 0043).
        bind = sessions.kw.get("bind")
        engine = getattr(bind, "engine", bind)
        self._direct: Engine | None = (
            engine if isinstance(engine, Engine) and engine.dialect.name == "postgresql" else None
        )
        self._direct_conn: Connection | None = None
        self._direct_lock = threading.Lock()
        self.worker_id = repository.WORKER_PREFIX + ulid()[-10:].lower()
        self._seen_workers: set[str] | None = None

    def close(self) -> None:
        if self._retry_pool is not None:
            self._retry_pool.shutdown(wait=True)
        self._pool.shutdown()
        self._marker.shutdown(wait=True)
        self.http.close()
        with self._direct_lock:
            if self._direct_conn is not None:
                # Closed, not pooled: a pooled connection would keep showing the worker id.
                self._direct_conn.invalidate()
                self._direct_conn.close()
                self._direct_conn = None

    def lanes(self) -> int:
        """How many executor loops an ``ExecutorThread`` runs with this executor's config."""
        if self.config.lanes > 0:
            return self.config.lanes
        return LANES_POSTGRESQL if self._direct is not None else 1

    def sibling(self) -> Executor:
        """Another executor of the same database, config and runtime: a lane of its own
        (its own worker id, claim tokens, connection, effect pools)."""
        other = Executor(self.sessions, clock=self.clock, config=self.config,
                         runtime=self.runtime, event_store=self.event_store)  # fmt: skip
        # One effect window per process: lanes do not multiply what a SIGKILL can leave.
        other._window = self._window
        return other

    def _token(self) -> str:
        """A batch's claim token; on PostgreSQL prefixed with this executor's worker id."""
        if self._direct is None:
            return new_id("clm")
        return f"{self.worker_id}.{ulid()}"

    def reap(self) -> int:
        """PostgreSQL: give back at once the claimed rows of executors whose connection is
        gone (a killed process), instead of after their lease; how many (decision 0043)."""
        if self._direct is None or not self.config.release_dead_claims:
            return 0
        with self._direct_connection() as conn:
            # Each look reads only the connections; the rows are touched when a worker id
            # seen before is gone — and on the first look, for workers gone before this one
            # started.
            live = repository.live_workers(conn)
            seen, self._seen_workers = self._seen_workers, live
            if seen is None:
                got = repository.release_dead_claims(conn, self.clock())
            elif seen - live:
                got = repository.release_dead_claims(conn, self.clock(), sorted(seen - live))
            else:
                got = 0
        if got:
            log.warning("journey steps of a stopped worker given back: %d", got)
        return got

    # -- one batch ------------------------------------------------------------------------

    def run_once(self) -> BatchResult:
        now = self.clock()
        token = self._token()
        # The runs (and external ids, for the events) read with the claim: no second
        # session, no ORM objects. On PostgreSQL one statement on the executor's own
        # autocommit connection: no check-out, BEGIN or COMMIT (decisions 0043, 0051).
        lease_until = now + self.config.lease
        if self._direct is not None:
            with self._direct_connection() as conn:
                claimed, runs = repository.claim_with_runs(
                    conn, now, lease_until, token, self.config.batch
                )
        else:
            with session_scope(self.sessions) as conn:
                claimed = repository.claim(conn, now, lease_until, token, self.config.batch)
                runs = repository.run_refs(conn, [c.run_id for c in claimed]) if claimed else {}
        out = BatchResult(claimed=len(claimed))
        if not claimed:
            return out
        items = []
        for c in claimed:
            item = _Item(c.execution_id, c.run_id, c.step_id, c.attempts, c.event_matched, token)
            item.retrying = bool(c.result and c.result.startswith(repository.RETRY_PREFIX))
            item.run = runs.get(c.run_id)
            items.append(item)
        # A read session only when a step needs one (a condition, a zone, a new version).
        reader = _Reader(self.read_sessions)
        try:
            self._load(reader, items)
            self._decide(reader, items, now)
        finally:
            reader.close()
        templated = [
            i
            for i in items
            if i.status == "done" and i.step is not None and i.step["type"] in ("send", "task")
        ]
        contexts = self._context = self._contexts(templated)
        external = [
            i for i in items
            if i.status == "done" and i.step is not None and i.step["type"] in d.EXTERNAL
        ]  # fmt: skip
        chosen = {id(i) for i in external}
        # Database steps first (one short transaction): they are not held up by the effects.
        self._mark([i for i in items if id(i) not in chosen], now, out)
        if self._retry_pool is not None:
            retries = [i for i in external if i.retrying]
            external = [i for i in external if not i.retrying]
            self._retry_later(retries, now, contexts, out)
        self._effects(external, now, out, contexts)
        return out

    def run_until_idle(self, max_batches: int = 10_000) -> int:
        total = 0
        for _ in range(max_batches):
            got = self.run_once()
            total += got.claimed
            if got.claimed == 0 and not self.drain_retries():
                break
        return total

    # -- retries, outside the batch --------------------------------------------------------

    def _retry_later(
        self, items: list[_Item], now: datetime, contexts: dict[str, dict[str, Any]],
        out: BatchResult,
    ) -> None:  # fmt: skip
        """Each retry's effect and mark in the retry pool, not holding up the batch. At most
        ``in_flight`` wait there; the others are left claimed (abandoned) and come back after
        the lease, so a receiver that stays slow cannot pile retries up."""
        assert self._retry_pool is not None
        for item in items:
            with self._retries_lock:
                if len(self._retries) >= self.config.in_flight:
                    item.abandoned = True
                    continue
                future = self._retry_pool.submit(self._retry, item, now, contexts)
                self._retries.add(future)
            future.add_done_callback(self._retry_done)
            out.retried += 1

    def _retry_done(self, future: Future[None]) -> None:
        with self._retries_lock:
            self._retries.discard(future)

    def _retry(self, item: _Item, now: datetime, contexts: dict[str, dict[str, Any]]) -> None:
        try:
            self._unit([item], now, contexts)
        except Exception as exc:
            log.exception("journey step %s failed", item.execution_id)
            self._failure(item, now, f"error: {type(exc).__name__}: {exc}")
        try:
            self._mark([item], now, BatchResult())
        except Exception:  # the lease gives it back
            log.exception("journey step %s: the retry's mark failed", item.execution_id)

    def drain_retries(self, timeout: float | None = None) -> bool:
        """Wait for the retries in the pool; True if there were any."""
        with self._retries_lock:
            running = list(self._retries)
        if running:
            wait(running, timeout=timeout)
        return bool(running)

    def next_due(self) -> datetime | None:
        """When the earliest pending step not yet due is due (None: none is waiting)."""
        if self._direct is not None:
            with self._direct_connection() as conn:
                return repository.next_due(conn, self.clock())
        with self.read_sessions() as session:
            return repository.next_due(session, self.clock())

    def next_claimable(self) -> datetime | None:
        """The due time of the first step a claim could take (at or before now: one is due
        now; None: none is waiting). A read: no write transaction, no writer lock."""
        if self._direct is not None:
            with self._direct_connection() as conn:
                return repository.next_claimable(conn, self.clock())
        # A connection, not a session: a look every 0.2 s of an idle server costs ~0.2 ms of
        # CPU this way, twice that through an ORM session.
        bind = self.read_sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            with self.read_sessions() as session:
                return repository.next_claimable(session, self.clock())
        with bind.connect() as conn:
            return repository.next_claimable(conn, self.clock())

    # -- phase 2: decide ------------------------------------------------------------------

    def _definition(self, reader: _Reader, journey_id: str, version: int) -> dict[str, Any]:
        key = (journey_id, version)
        if key not in self._definitions:  # versions never change: cache for good
            row = repository.version(reader(), journey_id, version)
            self._definitions[key] = row.definition if row is not None else {"steps": []}
        return self._definitions[key]

    def _step_map(self, definition: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str | None]]:
        """``definition.step_map`` of a cached definition (they never change), built once."""
        got = self._step_maps.get(id(definition))
        if got is None or got[0] is not definition:
            got = self._step_maps[id(definition)] = (definition, d.step_map(definition))
        return got[1]

    def _zone(self, reader: _Reader, workspace_id: str) -> str:
        if workspace_id not in self._zones:
            from liebian.automation.service import workspace_zone

            self._zones[workspace_id] = workspace_zone(reader(), workspace_id)
        return self._zones[workspace_id]

    def _load(self, reader: _Reader, items: list[_Item]) -> None:
        for item in items:
            if item.run is None:
                continue
            item.definition = self._definition(reader, item.run.journey_id, item.run.version)
            found = self._step_map(item.definition).get(item.step_id)
            if found is not None:
                item.step, item.following = found

    def _decide(self, reader: _Reader, items: list[_Item], now: datetime) -> None:
        live = []
        for item in items:
            if item.run is None or item.step is None or item.run.status != "active":
                item.status, item.result = "skipped", "run_ended"
                continue
            live.append(item)
        # Exit conditions before each step, one evaluation per (journey version).
        groups: dict[tuple[str, int], list[_Item]] = defaultdict(list)
        for item in live:
            assert item.run is not None and item.definition is not None
            if item.definition.get("exit"):
                groups[(item.run.journey_id, item.run.version)].append(item)
        for group in groups.values():
            assert group[0].definition is not None and group[0].run is not None
            hit = self._matching(
                reader(), group[0].run.workspace_id, group[0].definition["exit"], group, now
            )
            for item in group:
                if item.run_id in hit:
                    item.status, item.result = "skipped", "exit_condition"
                    item.exit_reason = "exit_condition"
        live = [i for i in live if i.status == "done"]
        branches: dict[tuple[str, int, str], list[_Item]] = defaultdict(list)
        for item in live:
            assert item.step is not None and item.run is not None
            kind = item.step["type"]
            default = d.next_of(item.step, item.following)
            item.next_step, item.next_due = default, now
            if kind == "wait":
                if "duration" in item.step:
                    item.next_due = now + d.duration(item.step["duration"], "duration")
                else:
                    at, days = d.until_spec(item.step["until"], "until")
                    zone = self._zone(reader, item.run.workspace_id)
                    item.next_due = d.wait_until(now, at, days, zone)
                item.result = f"waited until {item.next_due.isoformat()}"
            elif kind == "wait_event":
                if item.event_matched:
                    item.result = f"event:{item.step['event']}"
                else:
                    item.result = "timeout"
                    item.next_step = d._target(item.step, "timeout_next", item.following)
            elif kind == "branch":
                branches[(item.run.journey_id, item.run.version, item.step_id)].append(item)
            elif kind == "split":
                paths = item.step["paths"]
                pick = d.split_pick(item.run_id, item.step_id, paths)
                p = paths[pick]
                item.next_step = (
                    p["next"] if p.get("next") is not None else (d.END if "next" in p else default)
                )
                item.result = f"split:{p.get('name') or pick}"
                item.detail = {"path": pick}
        for group in branches.values():
            assert group[0].step is not None and group[0].run is not None
            hit = self._matching(
                reader(), group[0].run.workspace_id, group[0].step["condition"], group, now
            )
            for item in group:
                assert item.step is not None
                yes = item.run_id in hit
                item.next_step = d._target(item.step, "then" if yes else "else", item.following)
                item.result = "branch:then" if yes else "branch:else"

    def _matching(
        self,
        session: Session,
        workspace_id: str,
        condition: Any,
        items: list[_Item],
        now: datetime,
    ) -> set[str]:
        """Run ids among ``items`` whose contact matches ``condition`` now."""
        from liebian.segments.evaluation import evaluate

        by_contact: dict[str, list[str]] = defaultdict(list)
        for item in items:
            assert item.run is not None
            by_contact[item.run.contact_id].append(item.run_id)
        try:
            ids = evaluate(
                session, self.event_store, workspace_id, condition, list(by_contact), now=now
            )
        except Exception:
            log.exception("journey condition failed to evaluate; treated as not matching")
            return set()
        return {run for contact in ids for run in by_contact.get(contact, [])}

    # -- phase 2b: outside effects ----------------------------------------------------------

    def _effects(
        self, work: list[_Item], now: datetime, out: BatchResult,
        contexts: dict[str, dict[str, Any]],
    ) -> None:  # fmt: skip
        """Outside effects in the pool, at most ``config.in_flight`` started and not yet
        marked at any time; finished ones are marked in groups of ``config.mark_every``. A
        worker killed mid-batch so leaves at most ``in_flight`` delivered-but-unmarked steps,
        which the next claim does again with their key after the lease: a webhook step is
        POSTed again (the receiver dedupes on ``Idempotency-Key``), a send step finds its
        channels record and sends only if that record was not marked sent (decision 0025)."""
        if not work:
            return
        # Send steps go to channels.send_many in groups (two commits per group instead of
        # two per message); a webhook step is one unit.
        size = max(1, min(self.config.mark_every, self.config.in_flight))
        sends = [i for i in work if i.step is not None and i.step["type"] == "send"]
        units = [[i] for i in work if i.step is None or i.step["type"] != "send"]
        units += [sends[k : k + size] for k in range(0, len(sends), size)]
        queue = list(reversed(units))
        running = 0  # units started and not yet reported
        finished: list[_Item] = []
        # The group being marked (on the marker thread) while the next effects run: it
        # holds its share of the window until its mark returns (decision 0048).
        marking: Future[None] | None = None
        marking_n = 0
        window = self._window
        held = 0  # this batch's share of the window: started and not yet marked
        # Each effect reports ``(unit, exception or None)`` here when it is done, and each
        # mark puts its future: one queue read per completion (decisions 0051, 0054).
        completed: SimpleQueue[Any] = SimpleQueue()
        try:
            while queue or running or finished or marking is not None:
                while queue:
                    # With nothing of this batch in flight, wait for the other lanes to
                    # free the window; otherwise start only what fits now.
                    idle = not (running or finished or marking is not None)
                    if not window.take(len(queue[-1]), block=idle):
                        break
                    unit = queue.pop()
                    held += len(unit)
                    self._pool.submit(completed, unit, now, contexts)
                    running += 1
                done: list[Any] = []
                if running or marking is not None:
                    done.append(completed.get())
                    # One reader (this thread): not empty means get_nowait has an item (no
                    # ``Empty`` raised and caught on every pass).
                    while not completed.empty():
                        done.append(completed.get_nowait())
                reports = [got for got in done if not isinstance(got, Future)]
                # Counted before anything below can raise: the drain in ``finally`` waits
                # for exactly the units not yet reported.
                running -= len(reports)
                for unit, exc in reports:
                    if exc is not None:
                        if not isinstance(exc, Exception):
                            raise exc
                        # A bug in one effect must not stop the batch.
                        log.error("journey steps %s failed", [i.execution_id for i in unit],
                                  exc_info=exc)  # fmt: skip
                        for item in unit:
                            self._failure(item, now, f"error: {type(exc).__name__}: {exc}")
                    finished.extend(unit)
                if marking is not None and marking.done():
                    got, marking = marking, None
                    window.give(marking_n)
                    held -= marking_n
                    marking_n = 0
                    got.result()  # a failed mark stops the batch, as before
                if (
                    finished
                    and marking is None
                    and (len(finished) >= self.config.mark_every or not running)
                ):
                    marking = self._mark_group(finished, now, out)
                    marking.add_done_callback(completed.put)
                    marking_n, finished = len(finished), []
        finally:
            # A failure: what was started finishes (or is being marked) before the window
            # is given back; the rows not marked come back after their lease.
            while running:
                if not isinstance(completed.get(), Future):
                    running -= 1
            if marking is not None:
                wait([marking])
            window.give(held)

    def _mark_group(self, items: list[_Item], now: datetime, out: BatchResult) -> Future[None]:
        """PostgreSQL: mark on the marker thread (the commit's flush and round trip overlap
        the next effects). SQLite: at once, as before — a mark there is a short in-process
        write, and the writer lock is the limit, not waiting (decision 0048)."""
        if self._direct is not None:
            return self._marker.submit(self._mark, items, now, out)
        done: Future[None] = Future()
        try:
            self._mark(items, now, out)
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)
        return done

    def _unit(self, unit: list[_Item], now: datetime, contexts: dict[str, dict[str, Any]]) -> None:
        if unit[0].step is not None and unit[0].step["type"] == "send":
            self._send_group(unit, now, contexts)
        else:
            self._effect(unit[0], now, contexts.get(unit[0].run_id))

    def _late(self, now: datetime) -> bool:
        """Never start an effect a worker that took the row over may start too: once the
        claim's lease is (nearly) over, leave the rows alone; they are claimed again with the
        same key."""
        margin = min(timedelta(seconds=self.config.http_timeout), self.config.lease / 2)
        return self.clock() >= now + self.config.lease - margin

    def _effect(self, item: _Item, now: datetime, context: dict[str, Any] | None) -> None:
        assert item.step is not None and item.run is not None
        if self._late(now):
            item.abandoned = True
            return
        key = f"{item.run_id}:{item.step_id}"
        if item.step["type"] == "webhook":
            body = orjson.dumps(
                {
                    "journey_id": item.run.journey_id,
                    "run_id": item.run_id,
                    "step_id": item.step_id,
                    "contact_id": item.run.contact_id,
                    "payload": item.step.get("payload") or {},
                    "attempt": item.attempts,
                }
            )
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": key,
                "Liebian-Attempt": str(item.attempts),
            }
            try:
                response = self.http.post(item.step["url"], body, headers)
            except Exception as exc:
                self._failure(item, now, f"{type(exc).__name__}: {exc}")
                return
            if 200 <= response.status < 300:
                item.result = "sent"
                item.detail = {"http_status": response.status}
            else:
                self._failure(item, now, f"HTTP {response.status}")
            return

    def _send_group(
        self, items: list[_Item], now: datetime, contexts: dict[str, dict[str, Any]]
    ) -> None:
        """Send steps through ``channels.service.send_many`` (the key is ``<run>:<step>``, the
        same on every attempt: channels records it before the adapter call and, for a key
        it has seen, replays or resumes it instead of sending again)."""
        from liebian.channels.service import SendRequest, send_many

        if self._late(now):
            for item in items:
                item.abandoned = True
            return
        requests: list[SendRequest] = []
        asked: list[_Item] = []
        for item in items:
            assert item.step is not None and item.run is not None
            try:
                content = render_content(item.step["content"], contexts.get(item.run_id, {}))
            except MissingField as exc:
                item.status, item.result = "failed", f"missing_field: {exc}"
                continue
            requests.append(
                SendRequest(
                    workspace_id=item.run.workspace_id,
                    channel_id=item.step["channel_id"],
                    contact_id=item.run.contact_id,
                    content=content,
                    idempotency_key=f"{item.run_id}:{item.step_id}",
                    source="journey",
                    category=item.step.get("category", "marketing"),
                )
            )
            asked.append(item)
        if not requests:
            return
        outcomes = send_many(self.runtime, requests, now=now, threads=len(requests))
        for item, outcome in zip(asked, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                item.status, item.result = "failed", f"{outcome.code}: {outcome.message}"
            else:
                self._sent(item, now, outcome)

    def _sent(self, item: _Item, now: datetime, outcome: Any) -> None:
        status = outcome.status
        item.detail = {
            "send_id": outcome.send_id,
            "provider_message_id": outcome.provider_message_id,
        }
        if status == "sent":
            item.result = "sent"
        elif status == "deferred":
            # Quiet hours or a cap: the step waits for the window; "in flight" (another
            # worker holds the send): look again after the channel's lease.
            item.retry_at = outcome.deferred_until or now + self.config.lease
            item.result = f"deferred:{outcome.reason or 'quiet_hours'}"
        elif status == "suppressed":
            item.result = f"suppressed:{outcome.reason}"
        elif status == "pending_staff":
            item.result = "pending_staff"
        elif outcome.retryable:
            self._failure(item, now, f"send failed: {outcome.reason or outcome.error}")
        else:
            item.status, item.result = "failed", f"send failed: {outcome.reason or outcome.error}"

    def _failure(self, item: _Item, now: datetime, why: str) -> None:
        """Retry later with backoff; after the last attempt the step fails and the run goes
        on (the explain view shows why)."""
        if item.attempts < self.config.max_attempts:
            item.retry_at = now + self.config.retry_backoff * (2 ** (item.attempts - 1))
            item.result = f"{repository.RETRY_PREFIX} {why}"
        else:
            item.status, item.result = "failed", why

    def _contexts(self, items: list[_Item]) -> dict[str, dict[str, Any]]:
        """Template context of each item's contact, read set-based for the batch."""
        if not items:
            return {}
        from liebian.contacts.attributes import defs, value_of
        from liebian.contacts.models import Contact, ContactAttribute, ContactTag, Tag

        cipher = getattr(self.runtime, "cipher", None)
        wanted = list({i.run.contact_id for i in items if i.run is not None})
        out: dict[str, dict[str, Any]] = {}
        with self.read_sessions() as session:
            contacts = {
                c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(wanted)))
            }
            attrs: dict[str, dict[str, Any]] = defaultdict(dict)
            known_by_ws: dict[str, Any] = {}
            for row in session.scalars(
                select(ContactAttribute).where(ContactAttribute.contact_id.in_(wanted))
            ):
                if row.workspace_id not in known_by_ws:
                    known_by_ws[row.workspace_id] = defs(session, row.workspace_id)
                known = known_by_ws[row.workspace_id]
                if row.key in known:
                    value = value_of(row, known[row.key].type)
                    if value is not None:
                        attrs[row.contact_id][row.key] = value
            tags: dict[str, list[str]] = defaultdict(list)
            for contact_id, name in session.execute(
                select(ContactTag.contact_id, Tag.name)
                .join(Tag, ContactTag.tag_id == Tag.id)
                .where(ContactTag.contact_id.in_(wanted))
            ):
                tags[contact_id].append(name)
            for item in items:
                assert item.run is not None
                contact = contacts.get(item.run.contact_id)
                if contact is None:
                    continue
                fields: dict[str, Any] = {
                    "id": contact.id,
                    "external_id": contact.external_id,
                    "orders_count": contact.orders_count,
                }
                nickname = cipher.decrypt(contact.nickname_enc) if cipher is not None else None
                for k, v in (
                    ("nickname", nickname),
                    ("first_channel", contact.first_channel),
                    ("last_channel", contact.last_channel),
                ):
                    if v:
                        fields[k] = v
                out[item.run_id] = {
                    "contact": fields,
                    "attributes": attrs.get(contact.id, {}),
                    "tags": tags.get(contact.id, []),
                    "journey": {"name": self._journey_name(session, item.run.journey_id)},
                }
            self._campaign_contexts(session, items, out)
            self._link_contexts(session, items, out)
        return out

    def _link_contexts(
        self, session: Session, items: list[_Item], out: dict[str, dict[str, Any]]
    ) -> None:
        """``links`` for send steps whose content names short links: each the workspace's
        short link, carrying the person's token when they have an external id (content.py)."""
        if self.runtime is None:
            return
        wanted: dict[str, set[str]] = {}
        for item in items:
            if item.step is None or item.run is None or item.run_id not in out:
                continue
            slugs = set().union(*(
                _slugs_of(v) for v in (item.step.get("content") or {}).values()
                if isinstance(v, str)
            ))  # fmt: skip
            if slugs:
                wanted[item.run_id] = slugs
        if not wanted:
            return
        from liebian.kit.crypto import person_link_token
        from liebian.links.domains import public_base_url
        from liebian.links.models import Link

        every = set().union(*wanted.values())
        owner = dict(session.execute(
            select(Link.slug, Link.workspace_id).where(Link.slug.in_(every))).all())  # fmt: skip
        bases: dict[str, str] = {}
        secret = self.runtime.secret
        for item in items:
            named = wanted.get(item.run_id)
            if not named:
                continue
            assert item.run is not None
            ws = item.run.workspace_id
            if ws not in bases:
                bases[ws] = public_base_url(session, ws, self.runtime.settings.base_url).rstrip("/")
            user_id = out[item.run_id]["contact"].get("external_id")
            suffix = f"?lb_u={person_link_token(user_id, secret)}" if user_id else ""
            out[item.run_id]["links"] = {
                slug: f"{bases[ws]}/{slug}{suffix}" for slug in named if owner.get(slug) == ws
            }

    def _campaign_contexts(
        self, session: Session, items: list[_Item], out: dict[str, dict[str, Any]]
    ) -> None:
        """``campaign`` for send steps that name one: its name and the person's own invite
        link (``<public base>/p/<campaign>/<invite code>``) when they are a participant;
        otherwise absent, so the template's default is used or the step fails."""
        asking = [i for i in items if i.step is not None and i.step.get("campaign_id")]
        if not asking or self.runtime is None:
            return
        from liebian.campaigns.models import Campaign, Participant
        from liebian.links.domains import public_base_url

        cids = list({i.step["campaign_id"] for i in asking if i.step is not None})
        people = list({i.run.contact_id for i in asking if i.run is not None})
        codes = {
            (c, p): code
            for c, p, code in session.execute(
                select(Participant.campaign_id, Participant.contact_id, Participant.invite_code)
                .where(Participant.campaign_id.in_(cids), Participant.contact_id.in_(people))
            )
        }  # fmt: skip
        names = dict(session.execute(select(Campaign.id, Campaign.name).where(
            Campaign.id.in_(cids))).all())  # fmt: skip
        bases: dict[str, str] = {}
        for item in asking:
            assert item.step is not None and item.run is not None
            cid, ws = item.step["campaign_id"], item.run.workspace_id
            code = codes.get((cid, item.run.contact_id))
            if code is None or item.run_id not in out:
                continue
            if ws not in bases:
                bases[ws] = public_base_url(session, ws, self.runtime.settings.base_url)
            out[item.run_id]["campaign"] = {
                "name": names.get(cid, ""),
                "invite_code": code,
                "invite_url": f"{bases[ws].rstrip('/')}/p/{cid}/{code}",
                "poster_url": f"{bases[ws].rstrip('/')}/p/{cid}/me/poster",
            }

    def _journey_name(self, session: Session, journey_id: str) -> str:
        if journey_id not in self._names:
            self._names[journey_id] = (
                session.scalar(select(Journey.name).where(Journey.id == journey_id)) or ""
            )
        return self._names[journey_id]

    # -- phase 3: mark ------------------------------------------------------------------------

    def _mark(self, items: list[_Item], now: datetime, out: BatchResult) -> None:
        """One transaction for these items, set-based: lock the rows still ours (a claim whose
        lease ran out may have been taken over: those are left alone), apply the database
        actions, mark, insert the next rows, move the runs."""
        items = [i for i in items if not i.abandoned]
        if not items:
            return
        token = items[0].token
        if self._direct is not None and not any(i.retry_at is not None or _acts(i) for i in items):
            self._mark_direct(items, token, now, out)
            return
        with session_scope(self.sessions) as session:
            owned = repository.owned(session, [i.execution_id for i in items], token)
            mine = [i for i in items if i.execution_id in owned]
            out.lost += len(items) - len(mine)
            retry = [i for i in mine if i.retry_at is not None]
            repository.postpone_many(
                session, [(i.execution_id, i.retry_at, i.result) for i in retry if i.retry_at]
            )
            out.postponed += len(retry)
            final = [i for i in mine if i.retry_at is None]
            self._apply_all(session, final, now)
            w = self._writes(final, now)
            # finished_at is when the step was marked (the claim's time is its started_at).
            done_at = self.clock()
            repository.write_marks(session, w.marks, w.next_rows, w.moves, w.finished, done_at)
            self._count(final, out)
            data = self._event_lines(final, w.finished, now)
            if data:
                spool = self.runtime.spool
                after_commit(session, lambda: spool.append_line(data))

    def _mark_direct(self, items: list[_Item], token: str, now: datetime, out: BatchResult) -> None:
        """PostgreSQL, steps without database actions (webhooks, sends, waits, branches): the
        ownership check and every write in one autocommitted statement on the executor's own
        connection — one round trip instead of a pool check-out's ping, BEGIN, the lock, the
        writes and COMMIT (decision 0043). Only rows still claimed by ``token`` are marked;
        the next rows and run moves follow those only."""
        w = self._writes(items, now)
        done_at = self.clock()
        with self._direct_connection() as conn:
            marked = repository.mark_claimed(
                conn, token, w.marks, w.next_rows, w.moves, w.finished, done_at
            )
        mine = [i for i in items if i.execution_id in marked]
        out.lost += len(items) - len(mine)
        self._count(mine, out)
        runs = {i.run_id for i in mine}
        data = self._event_lines(mine, [f for f in w.finished if f[0] in runs], now)
        if data:
            self.runtime.spool.append_line(data)

    @contextlib.contextmanager
    def _direct_connection(self) -> Iterator[Connection]:
        """The executor's own autocommit connection (PostgreSQL): no pool check-out, so no
        ping, per statement. One user at a time; dropped after any error (the next use opens
        a new one)."""
        with self._direct_lock:
            if self._direct_conn is None:
                assert self._direct is not None
                conn = self._direct.connect().execution_options(isolation_level="AUTOCOMMIT")
                # This connection is the process's sign of life: its claims carry the same
                # worker id, and another executor gives them back once no connection shows
                # it (``reap``).
                conn.execute(
                    text("SELECT set_config('application_name', :name, false)"),
                    {"name": repository.WORKER_APP + self.worker_id},
                )
                # No bitmap scans on this connection (decision 0051): the claim's range of the
                # (status, due_at) index holds the dead versions of every step claimed and
                # marked since the table was last vacuumed; a bitmap scan visits all of them
                # on every claim, an index scan in due order marks them dead as it passes and
                # the next claims skip them.
                conn.execute(text("SET enable_bitmapscan = off"))
                self._direct_conn = conn
            try:
                yield self._direct_conn
            except BaseException:
                conn, self._direct_conn = self._direct_conn, None
                with contextlib.suppress(Exception):
                    conn.invalidate()
                    conn.close()
                raise

    def _count(self, items: list[_Item], out: BatchResult) -> None:
        for item in items:
            out.by_result[item.result.split(":")[0] or item.status] += 1
            if item.status == "failed":
                out.failed += 1
            else:
                out.done += 1

    def _writes(self, final: list[_Item], now: datetime) -> _Writes:
        """What marking these items writes: the marks, the next rows, the runs moved on and
        the runs finished."""
        w = _Writes()
        for item in final:
            next_step = item.next_step if item.status != "skipped" else None
            if item.status == "failed" and item.step is not None:
                # A failed action does not strand the person: the run goes on.
                next_step = d.next_of(item.step, item.following)
            w.marks.append(
                {
                    "b_id": item.execution_id,
                    "b_status": item.status,
                    "b_result": (item.result or item.status)[:300],
                    "b_detail": item.detail,
                    "b_next": next_step,
                }
            )
            if item.run is None:
                continue
            if item.exit_reason is not None:
                w.finished.append((item.run_id, "exited", item.exit_reason))
                continue
            if item.status == "skipped":
                continue
            if next_step is None or next_step == d.END:
                w.finished.append((item.run_id, "completed", None))
                continue
            assert item.definition is not None
            nxt = self._step_map(item.definition)[next_step][0]
            due = item.next_due or now
            waiting = None
            if nxt["type"] == "wait_event":
                waiting = nxt["event"]
                due = due + d.duration(nxt["timeout"], "timeout")
            w.next_rows.append(
                repository.step_row(item.run_id, item.run.workspace_id,
                                    item.run.journey_id, nxt, due, now, waiting)
            )  # fmt: skip
            w.moves.append((item.run_id, next_step))
        return w

    def _event_lines(
        self, items: list[_Item], finished: list[tuple[str, str, str | None]], now: datetime
    ) -> bytes:
        """Each finished step (``journey_step``; a split's as ``journey_split`` with its
        ``variant``, for the A/B readout) and each finished run (``journey_completed`` /
        ``journey_exited``) as event lines for the spool, appended once the marks are
        committed; ids derive from the rows, so a replay is stored once."""
        if getattr(self.runtime, "spool", None) is None or not items:
            return b""
        from liebian.events.store.base import EventRow

        runs = {i.run_id: i.run for i in items if i.run is not None}
        lines: list[bytes] = []

        def add(event: str, event_id: str, run: repository.RunRef, props: dict[str, Any]) -> None:
            row = EventRow(
                workspace_id=run.workspace_id, event_id=event_id, event=event, ts=now,
                received_at=now, user_id=run.external_id,
                properties={"journey_id": run.journey_id, "version": run.version,
                            "run_id": run.id, **props},
            )  # fmt: skip
            lines.append(orjson.dumps(row.to_record(), option=orjson.OPT_APPEND_NEWLINE))

        for item in items:
            if item.run is None or item.step is None:
                continue
            props = {"step_id": item.step_id, "step_type": item.step["type"],
                     "status": item.status, "result": (item.result or "")[:100]}  # fmt: skip
            if item.step["type"] == "split" and item.detail is not None:
                add("journey_split", f"jrs:{item.execution_id}", item.run,
                    {**props, "variant": str(item.result.split(":", 1)[-1])})  # fmt: skip
            else:
                add("journey_step", f"jrs:{item.execution_id}", item.run, props)
        for run_id, status, reason in finished:
            run = runs.get(run_id)
            if run is not None:
                add(f"journey_{status}", f"jrf:{run_id}", run, {"reason": reason or ""})
        return b"".join(lines)

    def _apply_all(self, session: Session, items: list[_Item], now: datetime) -> None:
        """Database actions. Tag changes are applied per (workspace, tags) for the whole
        group at once; the others one by one, each in a savepoint so a refusal (a deleted tag,
        an undefined attribute) fails only its own step."""
        actions = [i for i in items if _acts(i)]
        groups: dict[tuple[str, str, tuple[str, ...]], list[_Item]] = defaultdict(list)
        single = []
        for item in actions:
            assert item.step is not None and item.run is not None
            if item.step["type"] in ("add_tag", "remove_tag"):
                key = (item.run.workspace_id, item.step["type"], tuple(item.step["tag_ids"]))
                groups[key].append(item)
            else:
                single.append(item)
        for (ws, kind, tag_ids), group in groups.items():
            from liebian.contacts import tags

            fn = tags.add_tags if kind == "add_tag" else tags.remove_tags
            contacts = [i.run.contact_id for i in group if i.run is not None]
            try:
                with session.begin_nested():
                    fn(session, ws, contacts, list(tag_ids), source="api", reason="journey")
                for item in group:
                    item.result = kind
            except DomainError as exc:
                for item in group:
                    item.status, item.result = "failed", f"{exc.code}: {exc.message}"
        for item in single:
            try:
                with session.begin_nested():
                    self._apply(session, item, now)
            except DomainError as exc:
                item.status, item.result = "failed", f"{exc.code}: {exc.message}"
            except MissingField as exc:
                item.status, item.result = "failed", f"missing_field: {exc}"

    def _apply(self, session: Session, item: _Item, now: datetime) -> None:
        """The database effects of an action, in the mark transaction: exactly once with it."""
        assert item.step is not None and item.run is not None
        step, run = item.step, item.run
        kind = step["type"]
        if kind == "set_attribute":
            from liebian.contacts.attributes import set_attributes

            set_attributes(session, run.workspace_id, run.contact_id, step["values"])
            item.result = "set"
        elif kind == "grant_reward":
            from liebian.rewards.service import Grant, grant

            entry, created = grant(
                session,
                Grant(
                    workspace_id=run.workspace_id,
                    contact_id=run.contact_id,
                    key=f"journey:{run.id}:{step['id']}",
                    kind=step["kind"],
                    amount=int(step["amount"]),
                    name=step.get("name", ""),
                    campaign_id=step.get("campaign_id"),
                    currency=step.get("currency", "CNY"),
                    reason="journey",
                    status="issued",
                    meta={"journey_id": run.journey_id, "run_id": run.id},
                ),
            )
            item.result = "granted" if created else "granted_before"
            item.detail = {"reward_entry_id": entry.id}
        elif kind == "enrol_journey":
            from liebian.automation.service import enrol

            other = repository.get(session, run.workspace_id, step["journey_id"])
            if other is None or other.status != "live":
                item.status, item.result = "failed", "journey_not_live"
                return
            got = enrol(
                session,
                other,
                [run.contact_id],
                trigger=f"journey:{run.journey_id}",
                trigger_key=f"{run.id}:{step['id']}",
                now=now,
            )
            item.result = "enrolled" if got.entered else "not_enrolled:entry_rule"
        elif kind == "enrol_campaign":
            item.result = self._join_campaign(session, item, now)
        elif kind == "task":
            item.result = self._task(session, item, now)

    def _join_campaign(self, session: Session, item: _Item, now: datetime) -> str:
        """The person joins the campaign as a participant through campaigns' own join (in
        the mark transaction: exactly once with it; joining twice returns the same
        participant). A campaign that is not running fails the step with campaigns' reason."""
        assert item.step is not None and item.run is not None
        from liebian.campaigns.referrals import JoinInput, join
        from liebian.contacts.models import Contact

        external_id = session.scalar(
            select(Contact.external_id).where(Contact.id == item.run.contact_id)
        )
        cipher = getattr(self.runtime, "cipher", None)
        if external_id is None or cipher is None:
            item.status = "failed"
            return "contact_not_found" if external_id is None else "no_runtime: needs the cipher"
        participant, created = join(
            session,
            cipher,
            item.run.workspace_id,
            item.step["campaign_id"],
            JoinInput(external_id=external_id, channel="journey"),
            now=now,
        )
        item.detail = {"participant_id": participant.id, "invite_code": participant.invite_code}
        return "joined" if created else "joined_before"

    def _task(self, session: Session, item: _Item, now: datetime) -> str:
        assert item.step is not None and item.run is not None
        from liebian.channels import tasks

        context = self._context.get(item.run_id, {})
        title = render(item.step["title"], context)
        note = render(item.step.get("note") or "", context)
        task = tasks.create_task(
            session,
            item.run.workspace_id,
            title=title[:200],
            body=note,
            kind="journey",
            contact_id=item.run.contact_id,
            assignee=item.step.get("assignee"),
            source="journey",
            dedupe_key=f"{item.run_id}:{item.step_id}",
        )
        item.detail = {"task_id": task.id}
        return "task_created"


class ExecutorThread:
    """Runs the executor in the background: a batch, then the next at once while there is
    work; when nothing is due, it sleeps until the earliest pending step is due — at most
    ``interval`` (steps another process writes are seen by then) — and is woken at once when
    this process commits an enrolment or a matched wait (``repository.wake``). Decision 0034.

    With ``executor.lanes()`` above 1 (PostgreSQL by default, decision 0048) it runs that many
    loops, each with an executor of its own: they share due steps the way worker processes
    do (``SKIP LOCKED``, claim tokens), so each lane's own effect window and exactly-once
    rules are unchanged; the first lane also gives back the claims of gone workers."""

    def __init__(self, executor: Executor, interval: float = 0.2) -> None:
        self.executor = executor
        self.executors = [executor] + [executor.sibling() for _ in range(executor.lanes() - 1)]
        self.interval = interval
        self._stop = threading.Event()
        self._wakes = [threading.Event() for _ in self.executors]
        self._threads: list[threading.Thread] = []
        self.last_error: str | None = None

    def start(self) -> None:
        for k, (executor, wake) in enumerate(zip(self.executors, self._wakes, strict=True)):
            repository.add_waiter(wake)
            thread = threading.Thread(target=self._run, args=(executor, wake, k == 0),
                                      name=f"liebian-journeys-{k}", daemon=True)  # fmt: skip
            self._threads.append(thread)
            thread.start()

    def _run(self, executor: Executor, wake: threading.Event, reaps: bool) -> None:
        last_reap = 0.0
        # Whether to claim at once (after a batch, a wake-up, at the due time of a step seen
        # by the last look) or to look first: a look is a read, never a write transaction,
        # so an idle executor writes nothing (decision 0051).
        claim = True
        while not self._stop.is_set():
            # Cleared before the claim: a wake-up during the batch makes the sleep return.
            wake.clear()
            try:
                if reaps and time.monotonic() - last_reap >= REAP_EVERY:
                    last_reap = time.monotonic()
                    executor.reap()
                pause = 0.0
                if not claim:
                    pause, claim = self._look(executor)
                if claim:
                    got = executor.run_once()
                    pause, claim = (0.0, True) if got.claimed else self._look(executor)
                self.last_error = None
            except Exception as exc:
                log.exception("journey executor batch failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                pause, claim = self.interval, True
            if pause > 0 and wake.wait(pause):
                claim = True

    def _look(self, executor: Executor) -> tuple[float, bool]:
        """(seconds to sleep, whether to claim when they are over): at once when a step is
        due now; until the next step is due when that is within ``interval``; otherwise
        ``interval``, then look again (steps another process writes, leases running out)."""
        nxt = executor.next_claimable()
        if nxt is None:
            return self.interval, False
        until = (nxt - executor.clock()).total_seconds()
        if until <= 0:
            return 0.0, True
        if until <= self.interval:
            return until, True
        return self.interval, False

    def stop(self) -> None:
        self._stop.set()
        for wake in self._wakes:
            wake.set()
            repository.remove_waiter(wake)
        for thread in self._threads:
            thread.join(timeout=30)
        for executor in self.executors:
            executor.close()
