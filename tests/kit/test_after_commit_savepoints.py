"""kit.db.after_commit inside savepoints: nothing runs before the outermost commit, and a
rolled-back savepoint drops its own callbacks only (group commit and the conversion hook run
many units in one transaction, a savepoint each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from liebian.kit.db import after_commit, make_engine, make_session_factory


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ac.db'}")
    yield make_session_factory(engine)
    engine.dispose()


def _raising_savepoint(session: Session, ran: list[str], name: str) -> None:
    with pytest.raises(RuntimeError), session.begin_nested():
        after_commit(session, lambda: ran.append(name))
        raise RuntimeError(name)


def test_released_savepoint_waits_for_the_commit(sessions: sessionmaker[Session]) -> None:
    ran: list[str] = []
    with sessions() as session:
        after_commit(session, lambda: ran.append("outer"))
        with session.begin_nested():
            after_commit(session, lambda: ran.append("kept"))
        assert ran == []  # RELEASE SAVEPOINT makes nothing durable
        _raising_savepoint(session, ran, "dropped")
        assert ran == []
        session.commit()
    assert ran == ["outer", "kept"]


def test_rolled_back_outer_savepoint_drops_what_its_inner_ones_kept(
    sessions: sessionmaker[Session],
) -> None:
    ran: list[str] = []
    with sessions() as session:
        after_commit(session, lambda: ran.append("before"))
        with pytest.raises(RuntimeError), session.begin_nested():
            with session.begin_nested():
                after_commit(session, lambda: ran.append("inner, released"))
            raise RuntimeError("outer savepoint fails")
        with session.begin_nested():
            after_commit(session, lambda: ran.append("after"))
        session.commit()
    assert ran == ["before", "after"]


def test_rollback_drops_everything(sessions: sessionmaker[Session]) -> None:
    ran: list[str] = []
    with sessions() as session:
        with session.begin_nested():
            after_commit(session, lambda: ran.append("released"))
        after_commit(session, lambda: ran.append("outer"))
        session.rollback()
        session.commit()
    assert ran == []
