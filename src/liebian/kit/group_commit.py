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
any, so nothing needs starting or stopping with the process. It is supervised: if anything
kills it (a session that cannot be opened, a bug outside a unit), the batch in hand is answered
with the error, and a new writer starts when work is waiting. Nothing waits without bound: the
queue holds at most ``max_pending`` units (past that a caller gets 503 + Retry-After at once),
and a caller waits at most ``deadline`` seconds (then 503; its work is withdrawn if the writer
had not taken it yet). Decisions 0009 and 0013.
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

from liebian.kit.errors import Unavailable

log = logging.getLogger("liebian.group_commit")

T = TypeVar("T")


@dataclass(slots=True)
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None
    # Set under GroupCommit._claims: the writer has taken it (it will run), or its caller's
    # deadline passed before that (it never runs).
    taken: bool = False
    withdrawn: bool = False


class GroupCommit:
    """Runs ``work(session)`` callables for event-loop callers on one writer thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_batch: int = 32,
        idle_seconds: float = 2.0,
        max_pending: int = 2048,
        deadline: float = 15.0,
        name: str = "liebian-group-commit",
    ) -> None:
        # max_batch bounds how long one batch holds the database's write lock (other writers
        # — the API, jobs — queue behind it) and how long its first caller waits.
        # max_pending bounds the queue: past it a caller is answered 503 at once instead of
        # waiting behind work that cannot finish in time. deadline bounds every wait.
        self.sessions = sessions
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self.deadline = deadline
        self.name = name
        self._queue: queue.Queue[_Unit[Any]] = queue.Queue(maxsize=max_pending)
        self._guard = threading.Lock()
        self._claims = threading.Lock()
        self._thread: threading.Thread | None = None
        # Units the writer has taken off the queue and not yet answered (answered with the
        # error if the writer thread dies).
        self._in_hand: list[_Unit[Any]] = []
        self.batches = 0  # committed or failed batches, for tests and curiosity
        self.units = 0
        self.restarts = 0  # writer threads that died and were replaced

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)``'s result once its batch has committed; its exception if it
        raised (its savepoint rolled back) or if the batch's commit failed.

        Raises :class:`~liebian.kit.errors.Unavailable` (503, Retry-After) when the queue is
        full, or when ``deadline`` seconds pass first: with ``code="busy"`` if the work was
        withdrawn unrun (nothing written; retry), ``code="write_pending"`` if it was already
        being committed (read before retrying)."""
        loop = asyncio.get_running_loop()
        unit: _Unit[T] = _Unit(work, loop, loop.create_future())
        try:
            self._queue.put_nowait(unit)
        except queue.Full:
            raise Unavailable(
                "too many writes are waiting; nothing was written, try again in a moment",
                code="busy",
            ) from None
        self._ensure_writer()
        timer = loop.call_later(self.deadline, self._expire, unit)
        try:
            return await unit.future
        finally:
            timer.cancel()

    def _expire(self, unit: _Unit[Any]) -> None:
        """The caller's deadline: on its event loop."""
        if unit.future.done():
            return
        with self._claims:
            if not unit.taken:
                unit.withdrawn = True
        if unit.withdrawn:
            error = Unavailable(
                "the write waited too long and was withdrawn; nothing was written, try again",
                code="busy",
            )
        else:
            error = Unavailable(
                "the write is still being committed; read it back before trying again",
                code="write_pending",
            )
        unit.future.set_exception(error)

    def _ensure_writer(self) -> None:
        # Always under the guard: the writer decides to end under it too, and a unit queued
        # between its "queue is empty" and its exit must find no thread and start one.
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        # Supervised: whatever kills this loop, the thread is forgotten and — when work is
        # waiting — replaced, so no caller waits for a writer that no longer exists.
        ended = False
        try:
            ended = self._serve_batches()
        except BaseException as exc:
            log.exception("group commit: the writer thread failed; starting a new one")
            # The units it had taken off the queue are answered with what stopped it.
            in_hand = list(self._in_hand)
            for unit in in_hand:
                unit.error = exc
            _answer(in_hand)  # a caller already answered (deadline) is skipped
        finally:
            self._in_hand = []
            if not ended:
                with self._guard:
                    self._thread = None
                    self.restarts += 1
                if not self._queue.empty():
                    self._ensure_writer()

    def _serve_batches(self) -> bool:
        """Run batches until idle; True once it has ended cleanly (``_thread`` cleared)."""
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._guard:
                    # A unit queued before this check is seen here; one queued after it
                    # finds no thread and starts a new one.
                    if self._queue.empty():
                        self._thread = None
                        return True
                continue
            self._in_hand = [first]
            batch = self._claim([first])
            while len(batch) < self.max_batch:
                try:
                    unit = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._in_hand.append(unit)
                batch.extend(self._claim([unit]))
            if batch:
                self._run_batch(batch)
                _answer(batch)  # every caller of the batch is answered, whatever happened
            self._in_hand = []

    def _claim(self, units: list[_Unit[Any]]) -> list[_Unit[Any]]:
        """The units still wanted (their callers' deadlines have not withdrawn them)."""
        kept = []
        with self._claims:
            for unit in units:
                if not unit.withdrawn:
                    unit.taken = True
                    kept.append(unit)
        return kept

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        committed = False
        session: Session | None = None
        try:
            session = self.sessions()
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
            committed = True
        except BaseException as exc:
            if committed:
                # Durable already (after-commit callbacks are isolated in kit.db, so this is
                # not expected): the callers' answers stand.
                log.exception("group commit: failure after the commit of %d units", len(batch))
            else:
                # Nothing of this batch is committed: a unit that had succeeded (or was not
                # reached) gets the failure; a refused one keeps its own answer. Every caller
                # is answered either way, so none waits for ever.
                log.exception("group commit of %d units failed", len(batch))
                if session is not None:
                    _roll_back(session)
                for unit in batch:
                    if unit.error is None:
                        unit.error = exc
                        unit.result = None
        finally:
            if session is not None:
                try:
                    session.close()  # rolls back whatever a failure left open
                except Exception:
                    log.exception("group commit: closing the session failed")
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
