"""kit.precompiled: statements run on the DBAPI cursor read and write exactly what
``Connection.execute`` would, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from liebian.kit.db import UTCDateTime, make_engine
from liebian.kit.precompiled import Precompiled, insert_columns

# A temporary table: private to the test's connection, gone with it, on both databases.
things = Table(
    "precompiled_things",
    MetaData(),
    Column("id", String(20), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("data", JSON, nullable=True),
    Column("at", UTCDateTime, nullable=True),
    prefixes=["TEMPORARY"],
)

INSERT = insert_columns(things, ("id", "n", "status", "flag", "data", "at"))
BY_ID = Precompiled(select(things).where(things.c.id == bindparam("id")))
# A value bound in the statement itself, and one parameter used twice.
BUMP = Precompiled(
    update(things)
    .where(things.c.status == "open", things.c.n == bindparam("n"))
    .values(n=bindparam("n") + 1)
)
SINCE = Precompiled(
    select(things.c.id)
    .where(things.c.at >= bindparam("since", type_=UTCDateTime))
    .order_by(things.c.id)
)


@pytest.fixture
def conn(db_url: str) -> Iterator[Connection]:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        things.create(connection)
        yield connection
        connection.rollback()
    engine.dispose()


def test_values_round_trip_as_with_execute(conn: Connection) -> None:
    at = datetime(2026, 5, 1, 20, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))
    INSERT.execute(
        conn,
        {"id": "a", "n": 1, "status": "open", "flag": True, "data": {"k": [1, "二"]}, "at": at},
    )
    INSERT.execute(
        conn, {"id": "b", "n": 5, "status": "open", "flag": False, "data": None, "at": None}
    )
    row = BY_ID.execute(conn, {"id": "a"}).one()
    expected = conn.execute(select(things).where(things.c.id == "a")).one()
    assert tuple(row) == tuple(expected)
    assert row.at == at and row.at.tzinfo == UTC
    assert row.flag is True and row.data == {"k": [1, "二"]}
    assert row._asdict()["n"] == 1
    assert BY_ID.execute(conn, {"id": "b"}).one().at is None
    assert BY_ID.execute(conn, {"id": "nope"}).first() is None
    assert [r.id for r in SINCE.execute(conn, {"since": at - timedelta(seconds=1)}).rows] == ["a"]


def test_updates_report_their_rowcount(conn: Connection) -> None:
    INSERT.execute(
        conn, {"id": "a", "n": 1, "status": "open", "flag": True, "data": None, "at": None}
    )
    assert BUMP.execute(conn, {"n": 1}).rowcount == 1
    assert BUMP.execute(conn, {"n": 1}).rowcount == 0  # the compare-and-swap lost
    assert BY_ID.execute(conn, {"id": "a"}).one().n == 2


def test_driver_errors_become_sqlalchemy_errors(conn: Connection) -> None:
    values = {"id": "a", "n": 1, "status": "open", "flag": True, "data": None, "at": None}
    INSERT.execute(conn, values)
    savepoint = conn.begin_nested()  # PostgreSQL aborts the transaction on an error
    with pytest.raises(IntegrityError):
        INSERT.execute(conn, values)
    savepoint.rollback()
    assert BY_ID.execute(conn, {"id": "a"}).one().n == 1
