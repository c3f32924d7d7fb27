"""OLTP storage: one SQLAlchemy engine per process, SQLite (WAL) embedded or PostgreSQL.

Only the request or job boundary commits (``session_scope`` / the API dependency); domain code
flushes at most.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("liebian.db")

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, aware UTC out — SQLite has no zone, so it stores naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one function straight to the text SQLAlchemy's DATETIME stores
        (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC): the same bytes as process_bind_param
        followed by DATETIME's own processor, at ~1 µs instead of ~5 per value — bulk writes
        bind several datetimes per row (docs/benchmarks.md, issue 10)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        return sqlite_utc_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        """On SQLite, DATETIME's own parse and process_result_value in one function (the
        same values without TypeDecorator's wrapper: the hooks worker reads three per
        contact)."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        return sqlite_utc_datetime


_fromisoformat = datetime.fromisoformat


def sqlite_utc_datetime(value: str | None) -> datetime | None:
    """What a ``UTCDateTime`` column reads on SQLite: SQLAlchemy's DATETIME parse
    (``datetime.fromisoformat``), then aware UTC as ``process_result_value`` makes it."""
    if value is None:
        return None
    parsed = _fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# Texts of recent values: a bulk write binds the same instant many times (a batch's ``now``
# in every row, the time a request was received in each of its events' rows). Cleared when
# full; a dict read and write are atomic under the GIL, so threads may share it.
_UTC_TEXTS: dict[datetime, str] = {}
_UTC_TEXTS_MAX = 4096


def sqlite_utc_text(value: datetime | None) -> str | None:
    """An aware datetime as the text a ``UTCDateTime`` column stores on SQLite (naive UTC,
    ``YYYY-MM-DD HH:MM:SS.ffffff``). Values already in UTC (what the code makes) skip the
    conversion, and repeated instants are formatted once (the hooks worker binds ~8 per
    conversion; this was ~11% of its CPU, issue 10)."""
    if value is None:
        return None
    if not isinstance(value, datetime):  # what DATETIME itself would refuse
        raise TypeError("SQLite DateTime type only accepts Python datetime objects")
    zone = value.tzinfo
    if zone is None:
        raise ValueError("naive datetime given to a UTC column")
    text = _UTC_TEXTS.get(value)  # equal instants in any zone are equal keys: same text
    if text is not None:
        return text
    if zone is UTC:  # "+00:00" cut off: the same text as the naive value's
        text = value.isoformat(sep=" ", timespec="microseconds")[:26]
    else:
        text = (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
    if len(_UTC_TEXTS) >= _UTC_TEXTS_MAX:
        _UTC_TEXTS.clear()
    _UTC_TEXTS[value] = text
    return text


# Seconds a writer waits for the database, in SQLite's busy handler (other processes) and in
# the in-process writer queue (other threads) alike.
SQLITE_BUSY_TIMEOUT = 30.0


def _driver_savepoints(engine: Engine) -> None:
    """SAVEPOINT / RELEASE / ROLLBACK TO as driver SQL instead of compiled clause objects.

    SQLAlchemy's default runs each as ``connection.execute(SavepointClause(name))``, compiled
    anew every time (savepoint clauses are not cached): ~90 µs of Python per statement on
    this machine, so a savepoint cost ~0.2 ms — a quarter of an entry decision's CPU under
    group commit (a savepoint per unit, decision 0009). ``exec_driver_sql`` with the same text
    keeps the connection events (writer-lock upgrade check, audit, echo) and costs ~5 µs.
    """
    dialect: Any = engine.dialect
    quote = dialect.identifier_preparer.quote

    def do_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"SAVEPOINT {quote(name)}")

    def do_rollback_to_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {quote(name)}")

    def do_release_savepoint(connection: Any, name: str) -> None:
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {quote(name)}")

    dialect.do_savepoint = do_savepoint
    dialect.do_rollback_to_savepoint = do_rollback_to_savepoint
    dialect.do_release_savepoint = do_release_savepoint


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("poolclass", QueuePool)
        if kwargs["poolclass"] is QueuePool:
            # Pooled: opening and closing a SQLite connection per session cost ~1.2 ms and the
            # PRAGMAs again. A checked-out connection belongs to one thread at a time, so
            # check_same_thread can be off safely. The pool keeps as many as the server has
            # worker threads (anyio's default 40): with fewer, every burst past the pool size
            # opened and closed overflow connections (seen in profiles of the join bench).
            # Connections are opened lazily, so an idle process holds only what it used.
            kwargs.setdefault("pool_size", 40)
            kwargs.setdefault("max_overflow", 24)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT,
                "factory": QueuedWriterConnection,
            },
            **kwargs,
        )
        _configure_sqlite(engine, _writer_lock(path))
        _driver_savepoints(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    _driver_savepoints(engine)

    @event.listens_for(engine, "begin")
    def _on_begin(_conn: Any) -> None:
        refuse_on_event_loop("a database transaction")

    return engine


class BlockingOnEventLoop(RuntimeError):
    """Database work was started on the thread that runs the event loop.

    A transaction there blocks every request the process serves (and on SQLite, a write
    waiting for the writer lock while the lock's holder needs the loop to commit was a 30 s
    freeze of the whole server: issue 9). Refused at once, by construction: run the work in a
    worker thread (``anyio.to_thread.run_sync`` / ``asyncio.to_thread``, a sync route).
    """


def refuse_on_event_loop(what: str) -> None:
    """Raise :class:`BlockingOnEventLoop` when called on a thread running an event loop."""
    if asyncio._get_running_loop() is not None:
        raise BlockingOnEventLoop(
            f"{what} was started on the event-loop thread; run it in a worker thread"
        )


# ── SQLite: readers never wait, writers queue ───────────────────────────────────────────────
#
# A session knows it is read-only by where it came from: ``make_session_factory(engine,
# read_only=True)`` binds it to the engine with the ``liebian_read_only`` execution option.
# Its transactions begin with a plain deferred ``BEGIN``: on WAL a reader works on a snapshot,
# never waits for the write lock and never blocks a writer. Every other transaction is a write
# transaction and takes the write lock up front (``BEGIN IMMEDIATE``), so read-then-write
# invariants ("a group never over-fills") never race and never fail with SQLITE_BUSY.
#
# A read-only session that writes after all (a GET route with a side effect) upgrades: before
# its first write statement it queues for the writer lock like any writer, and SQLite itself
# refuses the write if another transaction committed since the reader's snapshot
# (SQLITE_BUSY_SNAPSHOT, "database is locked", answered 503 + Retry-After): a write can never
# be based on a stale read. Decision 0013.
#
# The writer queue: SQLite has one write lock per database. When threads of one process
# contend for it, the losers sat in SQLite's busy handler, which sleeps with backoff (1, 2, 5,
# 10 … 100 ms) and polls: under load most of a request's time was spent asleep while the lock
# was free. So the threads of a process first queue on a threading.Lock per database file and
# only then issue BEGIN IMMEDIATE; the next writer wakes the moment the previous one commits.
# The lock is an optimisation, not the guarantee: SQLite's own lock still serializes writers,
# and the busy timeout still covers other processes (a CLI command, a second server).
#
# The lock belongs to the *connection* that began the transaction, not to a thread: FastAPI
# may run a request's handler and its session's commit on different worker threads. It is
# given back whenever that connection's transaction ends — commit, rollback (which is also how
# the pool resets a connection checked in or garbage-collected without a commit), or close.
#
# No deadlock by construction (issue 9): nothing may begin a transaction or wait for the lock
# on a thread that runs an event loop (``refuse_on_event_loop``), so the loop — through which a
# request's session commits — is never the one waiting; readers never wait at all; and the
# holder of the lock (a worker thread, the group-commit writer, a job) needs neither the loop
# nor a free worker thread to commit (FastAPI exits a dependency outside the thread limiter).

READ_ONLY = "liebian_read_only"

_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: str) -> threading.Lock:
    """One lock per database file and process, shared by every engine on that file."""
    if not path or path == ":memory:":
        return threading.Lock()  # a private database per engine (per connection, even)
    key = str(Path(path).resolve())
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.Lock())


class QueuedWriterConnection(sqlite3.Connection):
    """A pysqlite connection that releases the process's writer lock when its transaction
    ends (see the note above)."""

    writer_lock: threading.Lock | None = None
    holds_writer_lock = False
    # In a read-only (deferred) transaction: a write statement must queue for the lock first.
    reading = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_if_idle()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_if_idle()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.reading = False
            self._release()

    def _release_if_idle(self) -> None:
        # A failed COMMIT can leave the transaction open; the lock follows the transaction.
        if not self.in_transaction:
            self.reading = False
            if self.holds_writer_lock:
                self._release()

    def _release(self) -> None:
        if self.holds_writer_lock and self.writer_lock is not None:
            self.holds_writer_lock = False
            self.writer_lock.release()

    def take_writer_lock(self) -> None:
        """Queue for the process's writer lock (no-op if held or not queued)."""
        lock = self.writer_lock
        if lock is None or self.holds_writer_lock:
            return
        refuse_on_event_loop("waiting for the SQLite writer lock")
        # Bounded like SQLite's own wait: only a thread that holds a write transaction and
        # opens a second one of its own (a bug) could wait here for long.
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT):
            raise OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError("database is locked (in-process writer queue)"),
            )
        self.holds_writer_lock = True


def _begin_immediate(dbapi_conn: Any, cursor_exec: Callable[[], Any]) -> None:
    queued = isinstance(dbapi_conn, QueuedWriterConnection)
    if queued:
        dbapi_conn.take_writer_lock()
    try:
        cursor_exec()
    except BaseException:
        if queued:
            dbapi_conn._release_if_idle()
        raise


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def _is_write(statement: str, context: Any) -> bool:
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        return True
    # Text statements. One that this misses (``WITH … INSERT``) is still safe: SQLite upgrades
    # the transaction itself, waiting in its busy handler instead of the queue.
    return statement.lstrip()[:7].upper().startswith(_WRITE_VERBS)


def _configure_sqlite(engine: Engine, writer_lock: threading.Lock) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer locking).
        dbapi_conn.isolation_level = None
        if isinstance(dbapi_conn, QueuedWriterConnection):
            dbapi_conn.writer_lock = writer_lock
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cur.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        # A cache raised for one transaction (raise_sqlite_cache) goes back to what it was.
        previous = record.info.pop(_RAISED_CACHE, None)
        if previous is not None and dbapi_conn is not None:
            try:
                dbapi_conn.execute(f"PRAGMA cache_size={int(previous)}")
            except sqlite3.Error:  # a broken connection: the pool finds out at its next use
                log.warning("could not set an SQLite connection's cache size back", exc_info=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        refuse_on_event_loop("a database transaction")
        dbapi_conn = conn.connection.dbapi_connection
        if conn._execution_options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            if isinstance(dbapi_conn, QueuedWriterConnection):
                dbapi_conn.reading = True
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes fails with SQLITE_BUSY at once under concurrency instead of waiting its turn,
        # which would break the "group never over-fills" style invariants.
        _begin_immediate(dbapi_conn, lambda: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        _conn: Any, cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        dbapi_conn = cursor.connection
        if (
            dbapi_conn.reading
            and not dbapi_conn.holds_writer_lock
            and _is_write(statement, context)
        ):
            dbapi_conn.take_writer_lock()


def make_session_factory(
    engine: Engine, info: dict[str, Any] | None = None, *, read_only: bool = False
) -> sessionmaker[Session]:
    """Sessions on ``engine``. ``read_only``: for work that only reads (GET requests, key
    look-ups, analytics parameters) — on SQLite its transactions never take the writer lock
    (see the note above); on PostgreSQL it changes nothing."""
    # ``info`` is copied into every session: how services reach process-wide helpers (the
    # change bus) through the session they were handed.
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=True, info=info or {})


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The job/CLI boundary: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_RAISED_CACHE = "liebian.raised_cache"


def raise_sqlite_cache(session: Session, kib: int) -> None:
    """On SQLite, let the connection of ``session``'s transaction keep up to ``kib`` KiB of
    database pages until it goes back to the pool, where it gets its own cache size back
    (SQLite's default is 2 MB a connection). A transaction that touches more pages than that
    reads them again and again and spills its changed ones to the WAL before the commit
    writes them again (the event hooks worker's batches: decision 0057). Elsewhere nothing."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    info = connection.connection.info
    if _RAISED_CACHE not in info:
        info[_RAISED_CACHE] = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{int(kib)}")


_BATCH_MEMO_KEY = "liebian.batch_memo"


def open_batch_memo(session: Session) -> None:
    """Give ``session`` an empty :func:`batch_memo` (the event hooks worker, per batch: its
    session lives for one transaction)."""
    session.info[_BATCH_MEMO_KEY] = {}


def batch_memo(session: Session) -> dict[Any, Any] | None:
    """What the steps of one batch transaction found out and share (the event hooks'
    consumers: the contact ids of the batch's people, resolved once), or None when the
    session has none (:func:`open_batch_memo`). Valid for that transaction only: it holds
    only what the transaction itself read or wrote."""
    return session.info.get(_BATCH_MEMO_KEY)


_AFTER_COMMIT_KEY = "liebian.after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the boundary commits (never if it rolls back).

    Cache invalidation and job enqueueing go through here so that nothing observes a change
    the database has not made true. A callback registered inside a SAVEPOINT
    (``session.begin_nested()``) belongs to it: releasing the savepoint hands it to the
    enclosing transaction, rolling the savepoint back drops it — and only the outermost
    commit runs anything. (Group commit runs many requests in one transaction, a savepoint
    each: one refused request must not drop, nor run early, the others' callbacks.)
    """
    pending = session.info.setdefault(_AFTER_COMMIT_KEY, [])
    pending.append((session.get_nested_transaction(), callback))


def _enclosing_savepoint(transaction: SessionTransaction) -> SessionTransaction | None:
    parent = transaction.parent
    while parent is not None and not parent.nested:
        parent = parent.parent
    return parent


def _inside(transaction: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


# SQLAlchemy fires ``after_commit`` / ``after_rollback`` for savepoints too, while the savepoint
# is still the session's nested transaction: that is how the two listeners tell them apart.


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is not None:  # a RELEASE SAVEPOINT: nothing is durable yet
        pending = session.info.get(_AFTER_COMMIT_KEY)
        if pending:
            enclosing = _enclosing_savepoint(savepoint)
            session.info[_AFTER_COMMIT_KEY] = [
                (enclosing if owner is savepoint else owner, callback)
                for owner, callback in pending
            ]
        return
    run_after_commit_callbacks(
        callback for _owner, callback in session.info.pop(_AFTER_COMMIT_KEY, [])
    )


def run_after_commit_callbacks(callbacks: Iterable[Callable[[], None]]) -> None:
    """Run each callback; one that fails is logged and the rest still run.

    The data is committed by now: a failing cache invalidation or bus subscriber must neither
    turn the committed write into an error for its caller nor skip the callbacks after it
    (issue 9). Caches also expire by TTL, which bounds what a lost invalidation costs.
    """
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("after-commit callback %r failed; the commit stands", callback)


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is None:
        session.info.pop(_AFTER_COMMIT_KEY, None)
        return
    pending = session.info.get(_AFTER_COMMIT_KEY)
    if pending:
        session.info[_AFTER_COMMIT_KEY] = [
            (owner, callback) for owner, callback in pending if not _inside(owner, savepoint)
        ]


def pg_array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (``{"a","b",NULL}``) for a parameter cast to ``text[]``,
    ``timestamptz[]``… in the SQL: psycopg dumps a Python list element by element in Python
    (~30 µs an array of 8, the largest share of a journey mark's client CPU); one string is
    dumped at once and parsed by the server exactly as the list's text form would be.
    Elements: None (NULL), str, or anything whose ``str`` the server parses (datetimes as ISO
    8601, with their offset)."""
    values = list(values)
    if not values:
        return "{}"
    try:
        joined = '","'.join(values)  # the common case: strings only, nothing to escape
    except TypeError:
        pass
    else:
        if "\\" not in joined and '"' not in joined:
            return '{"' + joined + '"}'
    return "{" + ",".join(map(_pg_element, values)) + "}"


def _pg_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return f'"{value.isoformat()}"'
    text = str(value)
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
