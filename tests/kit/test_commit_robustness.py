"""Issue 9, items 5 and 6: a failing after-commit callback never turns a committed write into
an error, and the group-commit writer never leaves a caller waiting for ever."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from liebian.kit.bus import LocalBus, publish_after_commit
from liebian.kit.db import after_commit, make_engine, make_session_factory, session_scope
from liebian.kit.errors import Unavailable
from liebian.kit.group_commit import GroupCommit

# A hang guard: on the old code these waits never ended. Not a figure under test.
HANG_GUARD = 60.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'robust.db'}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))
    yield eng
    eng.dispose()


def _committed(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM items ORDER BY id"))]


def _insert(item: int, callback: Callable[[], None] | None = None) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(text("INSERT INTO items (id) VALUES (:id)"), {"id": item})
        if callback is not None:
            after_commit(session, callback)
        return item

    return work


async def _in_one_batch(committer: GroupCommit, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Run ``works`` in one batch: a first unit holds the writer until all are queued."""
    started, release = threading.Event(), threading.Event()

    def hold(_session: Session) -> None:
        started.set()
        release.wait(HANG_GUARD)

    holder = asyncio.ensure_future(committer.run(hold))
    await asyncio.to_thread(started.wait, HANG_GUARD)
    tasks = [asyncio.ensure_future(committer.run(w)) for w in works]
    await asyncio.sleep(0)
    release.set()
    await holder
    return await asyncio.gather(*tasks, return_exceptions=True)


# ── item 5 ──────────────────────────────────────────────────────────────────────────────────


def test_a_failing_callback_leaves_the_batch_committed_and_the_others_run(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("cache invalidation broke")

    committer = GroupCommit(make_session_factory(engine))
    results = asyncio.run(
        _in_one_batch(
            committer,
            [
                _insert(1, broken),
                _insert(2, lambda: ran.append(2)),
                _insert(3, lambda: ran.append(3)),
            ],
        )
    )
    assert results == [1, 2, 3]  # every caller gets its committed answer
    assert _committed(engine) == [1, 2, 3]
    assert ran == [2, 3]  # the callbacks after the failing one still ran
    assert any(
        "cache invalidation broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info
    )


def test_a_failing_subscriber_does_not_fail_the_commit_nor_the_other_subscribers(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    bus = LocalBus()
    seen: list[str] = []
    relayed: list[str] = []

    def broken(_payload: Any) -> None:
        raise KeyError("subscriber broke")

    bus.subscribe("slug.changed", broken)
    bus.subscribe("slug.changed", lambda p: seen.append(p))
    bus.add_relay(lambda topic, p: relayed.append(p))
    sessions = make_session_factory(engine, {"liebian.bus": bus})
    with session_scope(sessions) as session:  # would raise from the commit on the old code
        session.execute(text("INSERT INTO items (id) VALUES (7)"))
        publish_after_commit(session, "slug.changed", "abc")
        publish_after_commit(session, "slug.changed", "def")
    assert _committed(engine) == [7]
    assert seen == ["abc", "def"] and relayed == ["abc", "def"]
    assert sum("subscriber broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 2


# ── item 6 ──────────────────────────────────────────────────────────────────────────────────


class FlakySessions:
    """A session factory whose first ``failures`` calls fail as a lost database would."""

    def __init__(self, sessions: sessionmaker[Session], failures: int) -> None:
        self.sessions = sessions
        self.failures = failures

    def __call__(self) -> Session:
        if self.failures:
            self.failures -= 1
            raise OperationalError("connect", None, Exception("unable to open database file"))
        return self.sessions()


def test_the_writer_survives_a_failure_outside_any_unit(engine: Engine) -> None:
    committer = GroupCommit(FlakySessions(make_session_factory(engine), 1))  # type: ignore[arg-type]

    async def main() -> tuple[Any, Any]:
        first = await asyncio.wait_for(
            asyncio.gather(committer.run(_insert(1)), return_exceptions=True), HANG_GUARD
        )
        second = await asyncio.wait_for(committer.run(_insert(2)), HANG_GUARD)
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, OperationalError)  # answered with the fault, not left waiting
    assert second == 2
    assert _committed(engine) == [2]


def test_the_writer_is_replaced_when_its_thread_dies(engine: Engine) -> None:
    # A failure the writer loop itself does not survive: the thread must be replaced, and the
    # work queued meanwhile done.
    committer = GroupCommit(make_session_factory(engine))
    original = committer._claim
    calls = {"n": 0}

    def claim_once_broken(units: list[Any]) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("the writer thread died")
        return original(units)

    committer._claim = claim_once_broken  # type: ignore[method-assign]

    async def main() -> Any:
        lost = asyncio.ensure_future(committer.run(_insert(1)))
        done = await asyncio.wait_for(committer.run(_insert(2)), HANG_GUARD)
        return done, await asyncio.wait_for(
            asyncio.gather(lost, return_exceptions=True), HANG_GUARD
        )

    done, (lost,) = asyncio.run(main())
    assert done == 2
    # The unit in hand when the thread died is answered with what killed it.
    assert isinstance(lost, MemoryError)
    assert committer.restarts == 1
    assert _committed(engine) == [2]


def test_a_full_queue_is_refused_at_once_with_503(engine: Engine) -> None:
    committer = GroupCommit(make_session_factory(engine), max_pending=2)
    started, release = threading.Event(), threading.Event()

    def hold(_session: Session) -> None:
        started.set()
        release.wait(HANG_GUARD)

    async def main() -> list[Any]:
        holder = asyncio.ensure_future(committer.run(hold))
        await asyncio.to_thread(started.wait, HANG_GUARD)
        queued = [asyncio.ensure_future(committer.run(_insert(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable) as refused:
            await committer.run(_insert(3))
        release.set()
        await holder
        return [refused.value, *(await asyncio.gather(*queued))]

    refused, *answers = asyncio.run(main())
    assert refused.status == 503 and refused.retry_after >= 1 and refused.code == "busy"
    assert answers == [1, 2]
    assert _committed(engine) == [1, 2]  # the refused write was never made


def test_a_wait_past_its_deadline_is_answered_and_withdrawn_if_not_started(
    engine: Engine,
) -> None:
    # A tiny deadline so the test need not wait; what is checked is what each caller is told
    # and what was written, never how long anything took.
    committer = GroupCommit(make_session_factory(engine), deadline=0.05)
    started, release = threading.Event(), threading.Event()

    def hold(session: Session) -> int:
        started.set()
        release.wait(HANG_GUARD)
        session.execute(text("INSERT INTO items (id) VALUES (10)"))
        return 10

    async def main() -> list[Any]:
        holder = asyncio.ensure_future(committer.run(hold))
        await asyncio.to_thread(started.wait, HANG_GUARD)
        waiting = asyncio.ensure_future(committer.run(_insert(11)))
        answers = await asyncio.gather(holder, waiting, return_exceptions=True)
        committer.deadline = HANG_GUARD
        release.set()
        # The writer goes on: later work is done.
        answers.append(await asyncio.wait_for(committer.run(_insert(12)), HANG_GUARD))
        return answers

    held, waiting, later = asyncio.run(main())
    assert isinstance(held, Unavailable) and held.code == "write_pending"
    assert isinstance(waiting, Unavailable) and waiting.code == "busy"
    assert later == 12
    # The holder was under way: it committed. The withdrawn unit never ran.
    assert _committed(engine) == [10, 12]


def test_failures_are_logged(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    committer = GroupCommit(FlakySessions(make_session_factory(engine), 1))  # type: ignore[arg-type]

    async def main() -> None:
        await asyncio.gather(committer.run(_insert(1)), return_exceptions=True)

    with caplog.at_level(logging.ERROR, logger="liebian.group_commit"):
        asyncio.run(main())
    assert any(r.name == "liebian.group_commit" and r.exc_info for r in caplog.records)
