"""kit.db's engines issue SAVEPOINT / RELEASE / ROLLBACK TO as driver SQL (not compiled
clause objects, ~0.2 ms a savepoint of Python): the same statements, the same outcome, on
SQLite and PostgreSQL — a rolled-back savepoint undoes its own writes only, nested too."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from liebian.kit.db import make_engine, make_session_factory


def test_savepoints_are_driver_sql_and_roll_back_their_own_writes(db_url: str) -> None:
    engine = make_engine(db_url)
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "SAVEPOINT" in statement.upper():
            seen.append(statement)

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS sp_probe")
            conn.exec_driver_sql("CREATE TABLE sp_probe (v INTEGER)")
        sessions = make_session_factory(engine)
        with sessions() as session:
            session.execute(text("INSERT INTO sp_probe VALUES (1)"))
            with session.begin_nested():
                session.execute(text("INSERT INTO sp_probe VALUES (2)"))
                with pytest.raises(RuntimeError), session.begin_nested():
                    session.execute(text("INSERT INTO sp_probe VALUES (3)"))
                    raise RuntimeError("undo 3")
            with pytest.raises(RuntimeError), session.begin_nested():
                session.execute(text("INSERT INTO sp_probe VALUES (4)"))
                raise RuntimeError("undo 4")
            session.commit()
        with engine.connect() as conn:
            kept = [r[0] for r in conn.exec_driver_sql("SELECT v FROM sp_probe ORDER BY v")]
            conn.exec_driver_sql("DROP TABLE sp_probe")
            conn.commit()
    finally:
        engine.dispose()
    assert kept == [1, 2]
    kinds = [s.split(" sa_savepoint")[0] for s in seen]
    assert kinds == [
        "SAVEPOINT", "SAVEPOINT", "ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT",
        "SAVEPOINT", "ROLLBACK TO SAVEPOINT",
    ]  # fmt: skip
