"""Group commit for SQLite: many small write transactions run as one, a SAVEPOINT each.

SQLite has one writer at a time, so concurrent requests that write (group joins, assist helps)
take turns anyway. Taking turns one transaction each costs, per request, a connection
check-out, ``BEGIN IMMEDIATE``, the writer-lock hand-off between threads and a ``COMMIT``
(a WAL append). Here one writer thread takes every unit of work queued so far, runs them back
to back inside one transaction — each in its own savepoint, so a refusal or an error rolls
back only its own writes — commits once, and only then answers each caller. Decision 0009.

What a caller sees is what it would see with a transaction of its own:

- Its answer comes after the commit that made it true (or with the error that stopped it).
  If the batch's commit fails, every caller whose work had succeeded gets that error.
- After-commit callbacks (``kit.db.after_commit``: bus events, cache invalidation) registered
  by a unit that was rolled back never run; the others run once, after the commit.
- Each unit starts with an empty identity map, as a fresh session would.

The writer thread starts with the first unit of work and ends after ``idle_seconds`` without
any, so nothing needs starting or stopping with the process.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("liebian.group_commit")

T = TypeVar("T")


@dataclass(slots=True)
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Runs ``work(session)`` callables for event-loop callers on one writer thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_batch: int = 32,
        idle_seconds: float = 2.0,
        name: str = "liebian-group-commit",
    ) -> None:
        # max_batch bounds how long one batch holds the database's write lock (other writers
        # — the API, jobs — queue behind it) and how long its first caller waits.
        self.sessions = sessions
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self.name = name
        self._queue: queue.SimpleQueue[_Unit[Any]] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0  # committed or failed batches, for tests and curiosity
        self.units = 0

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)``'s result once its batch has committed; its exception if it
        raised (its savepoint rolled back) or if the batch's commit failed."""
        loop = asyncio.get_running_loop()
        unit: _Unit[T] = _Unit(work, loop, loop.create_future())
        self._queue.put(unit)
        self._ensure_writer()
        return await unit.future

    def _ensure_writer(self) -> None:
        # Always under the guard: the writer decides to end under it too, and a unit queued
        # between its "queue is empty" and its exit must find no thread and start one.
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._guard:
                    # A unit queued before this check is seen here; one queued after it
                    # finds no thread and starts a new one.
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run_batch(batch)
            _answer(batch)

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        session = self.sessions()
        try:
            for unit in batch:
                try:
                    # The savepoint's context rolls back only this unit's writes (and drops
                    # its after-commit callbacks) when it raises.
                    with session.begin_nested():
                        unit.result = unit.work(session)
                except Exception as exc:
                    unit.error = exc
                # Release what this unit loaded: the next one must not read rows that an
                # earlier unit changed with Core statements from a stale identity map.
                session.expunge_all()
            session.commit()
        except BaseException as exc:
            # Nothing of this batch is committed: a unit that had succeeded (or was not
            # reached) gets the failure; a refused one keeps its own answer. Every caller
            # is answered either way, so none waits for ever.
            log.exception("group commit of %d units failed", len(batch))
            _roll_back(session)
            for unit in batch:
                if unit.error is None:
                    unit.error = exc
                    unit.result = None
        finally:
            session.close()  # rolls back whatever a failure left open
            self.batches += 1
            self.units += len(batch)


def _roll_back(session: Session) -> None:
    # A COMMIT that failed can leave the DBAPI transaction open (and with it, on SQLite, the
    # write lock); closing the session alone returned such a connection to the pool still in
    # its transaction (seen in tests/kit/test_group_commit.py).
    try:
        session.rollback()
    except Exception:
        log.exception("group commit: rollback after a failed batch failed")


def _answer(batch: list[_Unit[Any]]) -> None:
    # One wake-up per event loop for the whole batch, not one per unit.
    by_loop: dict[asyncio.AbstractEventLoop, list[_Unit[Any]]] = defaultdict(list)
    for unit in batch:
        by_loop[unit.loop].append(unit)
    for loop, units in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, units)
        except RuntimeError:  # the loop was closed while its callers waited: nobody to tell
            log.warning("group commit: event loop closed before %d answers", len(units))


def _settle(units: list[_Unit[Any]]) -> None:
    for unit in units:
        if unit.future.done():  # the caller went away (cancelled); the work stands
            continue
        if unit.error is not None:
            unit.future.set_exception(unit.error)
        else:
            unit.future.set_result(unit.result)
