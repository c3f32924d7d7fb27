"""The in-process SQLite writer queue (kit.db): threads take turns for BEGIN IMMEDIATE, and the
turn is always given back however a transaction ends."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from liebian.kit import db
from liebian.kit.db import QueuedWriterConnection, make_engine, make_session_factory, session_scope


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    yield eng
    eng.dispose()


def _lock(engine: Engine, tmp_path: Path) -> threading.Lock:
    return db._writer_lock(str(tmp_path / "q.db"))


def test_connections_carry_the_file_lock(engine: Engine, tmp_path: Path) -> None:
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, QueuedWriterConnection)
        assert raw.writer_lock is _lock(engine, tmp_path)
    # A second engine on the same file queues on the same lock.
    other = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with other.connect() as conn:
        assert conn.connection.dbapi_connection.writer_lock is _lock(engine, tmp_path)  # type: ignore[union-attr]
    other.dispose()


def test_lock_follows_the_transaction(engine: Engine, tmp_path: Path) -> None:
    lock = _lock(engine, tmp_path)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        session.execute(text("UPDATE counter SET n = n + 1"))
        assert lock.locked()
    assert not lock.locked()  # commit

    with pytest.raises(RuntimeError), session_scope(sessions) as session:
        session.execute(text("UPDATE counter SET n = n + 1"))
        raise RuntimeError("boom")
    assert not lock.locked()  # rollback

    session = sessions()
    session.execute(text("SELECT n FROM counter"))
    assert lock.locked()
    session.close()  # closed without commit: the pool resets the connection
    assert not lock.locked()

    # Dropped without close: garbage collection checks the connection in. Only this test's
    # objects are collected: earlier tests' garbage (a whole xdist worker's) stays frozen, so
    # its finalizers cannot stall this test (seen: 90 s inside gc.collect() in a full run).
    gc.freeze()
    try:
        session = sessions()
        session.execute(text("SELECT n FROM counter"))
        del session
        gc.collect()
        assert not lock.locked()
    finally:
        gc.unfreeze()


def test_commit_on_another_thread_releases(engine: Engine, tmp_path: Path) -> None:
    # FastAPI runs the handler and the session's commit on different worker threads.
    lock = _lock(engine, tmp_path)
    session = make_session_factory(engine)()
    session.execute(text("UPDATE counter SET n = n + 1"))
    worker = threading.Thread(target=session.commit)
    worker.start()
    worker.join()
    assert not lock.locked()
    session.close()


def test_failed_begin_gives_the_turn_back(engine: Engine, tmp_path: Path) -> None:
    lock = _lock(engine, tmp_path)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, QueuedWriterConnection)

        def refuse() -> None:
            raise OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked"))

        db._begin_immediate(raw, lambda: None)
        assert lock.locked() and raw.holds_writer_lock
        raw.rollback()  # no transaction was open: rollback is how SQLAlchemy cleans up
        assert not lock.locked()
        with pytest.raises(OperationalError):
            db._begin_immediate(raw, refuse)
        assert not lock.locked() and not raw.holds_writer_lock


def test_waiting_for_itself_times_out_instead_of_hanging(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread that holds a transaction and opens a second one of its own cannot be served;
    # it gets SQLite's "database is locked", as it would without the queue.
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT", 0.05)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as outer:
        outer.execute(text("UPDATE counter SET n = n + 1"))
        with (
            pytest.raises(OperationalError, match="database is locked"),
            session_scope(sessions) as inner,
        ):
            inner.execute(text("SELECT n FROM counter"))
    assert not _lock(engine, tmp_path).locked()


def test_many_threads_increment_without_lost_updates_or_busy_errors(engine: Engine) -> None:
    # Read-then-write in every transaction: only correct if writers are serialized.
    sessions = make_session_factory(engine)
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        for _ in range(25):
            try:
                with session_scope(sessions) as session:
                    n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
                    session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 16 * 25


# ── read-only sessions (issue 9, decision 0013) ─────────────────────────────────────────────


def test_a_read_only_session_never_waits_for_the_writer_lock(
    engine: Engine, tmp_path: Path
) -> None:
    lock = _lock(engine, tmp_path)
    writes = make_session_factory(engine)
    reads = make_session_factory(engine, read_only=True)
    writer = writes()
    writer.execute(text("UPDATE counter SET n = n + 1"))  # holds the lock, not committed
    assert lock.locked()
    answers: list[int] = []
    # On another thread, as a request would: it answers while the writer still holds the lock,
    # and sees the last committed value (WAL snapshot), not the writer's.
    reader = threading.Thread(
        target=lambda: answers.append(reads().execute(text("SELECT n FROM counter")).scalar_one())
    )
    reader.start()
    reader.join()
    assert answers == [0] and lock.locked()
    writer.commit()
    writer.close()
    with reads() as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 1
        assert not lock.locked()


def test_a_read_only_session_that_writes_queues_and_never_writes_on_a_stale_read(
    engine: Engine, tmp_path: Path
) -> None:
    lock = _lock(engine, tmp_path)
    reads = make_session_factory(engine, read_only=True)
    # Upgrading: the write statement takes the lock first, the commit gives it back.
    with session_scope(reads) as session:
        n = session.execute(text("SELECT n FROM counter")).scalar_one()
        assert not lock.locked()
        session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        assert lock.locked()
    assert not lock.locked()
    # A reader whose snapshot another writer has moved past cannot write what it read.
    stale = reads()
    seen = stale.execute(text("SELECT n FROM counter")).scalar_one()
    with session_scope(make_session_factory(engine)) as other:
        other.execute(text("UPDATE counter SET n = n + 10"))
    with pytest.raises(OperationalError) as refused:
        stale.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})
    stale.rollback()
    stale.close()
    assert not lock.locked()
    from liebian.kit.faults import is_transient

    assert is_transient(refused.value)  # answered 503 + Retry-After
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 11


def test_no_transaction_begins_on_the_event_loop(engine: Engine) -> None:
    import asyncio

    async def on_the_loop() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    with pytest.raises(db.BlockingOnEventLoop):
        asyncio.run(on_the_loop())

    async def in_a_thread() -> int:
        def read() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT n FROM counter")).scalar_one())

        return await asyncio.to_thread(read)

    assert asyncio.run(in_a_thread()) == 0
