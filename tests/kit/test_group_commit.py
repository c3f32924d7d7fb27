"""Group commit (kit.group_commit): units of work share a transaction, a savepoint each, and
every caller is answered only after the commit — as if each had a transaction of its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Integer, event, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from liebian.kit.db import after_commit, make_engine, make_session_factory
from liebian.kit.errors import Conflict
from liebian.kit.group_commit import GroupCommit


class _Base(DeclarativeBase):
    pass


class Item(_Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'gc.db'}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))
    yield eng
    eng.dispose()


def _insert(item: int, *, refuse: bool = False) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(text("INSERT INTO items (id) VALUES (:id)"), {"id": item})
        if refuse:  # written, then refused: its savepoint must take the row back
            raise Conflict("refused", code="refused")
        return item

    return work


def _committed(engine: Engine) -> list[int]:
    # A connection of its own sees only what was committed.
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM items ORDER BY id"))]


async def _in_one_batch(committer: GroupCommit, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Run ``works`` in one batch: a first unit holds the writer until all are queued."""
    started, release = threading.Event(), threading.Event()

    def hold(_session: Session) -> None:
        started.set()
        release.wait(10)

    holder = asyncio.ensure_future(committer.run(hold))
    await asyncio.to_thread(started.wait, 10)
    tasks = [asyncio.ensure_future(committer.run(w)) for w in works]
    await asyncio.sleep(0)  # each task queues its unit on its first step
    release.set()
    await holder
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_refused_unit_does_not_undo_the_others(engine: Engine) -> None:
    committer = GroupCommit(make_session_factory(engine))
    results = asyncio.run(
        _in_one_batch(committer, [_insert(1), _insert(2, refuse=True), _insert(3)])
    )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], Conflict)
    assert _committed(engine) == [1, 3]
    assert (committer.batches, committer.units) == (2, 4)  # the holder's batch, then the three


def test_an_unexpected_error_is_that_callers_alone(engine: Engine) -> None:
    committer = GroupCommit(make_session_factory(engine))

    def broken(session: Session) -> None:
        session.execute(text("INSERT INTO items (id) VALUES (5)"))
        session.execute(text("INSERT INTO items (id) VALUES (5)"))  # IntegrityError

    results = asyncio.run(_in_one_batch(committer, [_insert(4), broken, _insert(6)]))
    assert results[0] == 4 and results[2] == 6
    assert "UNIQUE" in str(results[1])
    assert _committed(engine) == [4, 6]


def test_the_answer_comes_after_the_commit(engine: Engine) -> None:
    # The commit is slowed down: an answer sent before it would find nothing committed.
    event.listen(engine, "commit", lambda _conn: time.sleep(0.2))
    committer = GroupCommit(make_session_factory(engine))

    async def main() -> list[int]:
        await committer.run(_insert(7))
        return await asyncio.to_thread(_committed, engine)  # never the DB on the loop

    assert asyncio.run(main()) == [7]


def test_a_failed_commit_fails_every_caller_that_had_succeeded(engine: Engine) -> None:
    def fail(_conn: Any) -> None:
        raise OSError("disk full")

    committer = GroupCommit(make_session_factory(engine))
    event.listen(engine, "commit", fail)
    results = asyncio.run(_in_one_batch(committer, [_insert(8), _insert(9, refuse=True)]))
    event.remove(engine, "commit", fail)
    assert isinstance(results[0], OSError)
    assert isinstance(results[1], Conflict)  # refused before the commit: its own answer
    assert _committed(engine) == []
    # The writer carries on with the next batch.
    assert asyncio.run(committer.run(_insert(10))) == 10
    assert _committed(engine) == [10]


def test_after_commit_callbacks_run_once_and_only_for_kept_units(engine: Engine) -> None:
    ran: list[tuple[str, list[int]]] = []

    def announcing(item: int, *, refuse: bool = False) -> Callable[[Session], int]:
        def work(session: Session) -> int:
            after_commit(session, lambda: ran.append((f"item {item}", _committed(engine))))
            return _insert(item, refuse=refuse)(session)

        return work

    committer = GroupCommit(make_session_factory(engine))
    asyncio.run(
        _in_one_batch(committer, [announcing(11), announcing(12, refuse=True), announcing(13)])
    )
    # Each kept unit's callback ran once, after the commit (it saw both rows committed).
    assert ran == [("item 11", [11, 13]), ("item 13", [11, 13])]


def test_each_unit_starts_with_an_empty_identity_map(engine: Engine) -> None:
    kept: list[Item | None] = []  # held strongly: the identity map only holds weakly

    def load(session: Session) -> int:
        kept.append(session.get(Item, 20))
        return len(session.identity_map)

    def count(session: Session) -> int:
        return len(session.identity_map)

    committer = GroupCommit(make_session_factory(engine))
    results = asyncio.run(_in_one_batch(committer, [_insert(20), load, count]))
    assert results == [20, 1, 0]


def test_the_writer_thread_ends_when_idle_and_comes_back(engine: Engine) -> None:
    committer = GroupCommit(make_session_factory(engine), idle_seconds=0.05)
    assert asyncio.run(committer.run(_insert(30))) == 30
    deadline = time.monotonic() + 5
    while committer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert committer._thread is None
    assert asyncio.run(committer.run(_insert(31))) == 31
    assert _committed(engine) == [30, 31]


def test_callers_on_several_threads_are_all_answered(engine: Engine) -> None:
    # Units from different event loops (e.g. a test client's and the server's) share batches;
    # each loop is woken for its own callers.
    committer = GroupCommit(make_session_factory(engine))
    answers: list[int] = []

    def caller(base: int) -> None:
        async def main() -> list[int]:
            return list(
                await asyncio.gather(*(committer.run(_insert(base + i)) for i in range(20)))
            )

        answers.extend(asyncio.run(main()))

    threads = [threading.Thread(target=caller, args=(base,)) for base in (100, 200, 300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        sorted(answers)
        == _committed(engine)
        == sorted(base + i for base in (100, 200, 300) for i in range(20))
    )
