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
    func,
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


def test_executemany_writes_what_execute_writes(conn: Connection) -> None:
    # The hooks worker's bulk writes skip SQLAlchemy's per-row parameter building: the rows
    # must be the same as through execute, a value bound in the statement included.
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from liebian.kit.precompiled import executemany

    shanghai = timezone(timedelta(hours=8))
    rows = [
        {"id": f"r{i}", "n": i, "status": "open", "flag": i % 2 == 0,
         "data": {"i": i, "名": "二"} if i % 3 else None,
         "at": datetime(2026, 5, 1, 20, 30, i, 1000 * i, tzinfo=shanghai) if i % 4 else None}
        for i in range(6)
    ]  # fmt: skip
    session = Session(bind=conn)
    executemany(session, insert(things), rows)
    conn.execute(insert(things), [{**r, "id": f"x{r['id']}"} for r in rows])
    bump = (
        update(things)
        .where(things.c.status == "open", things.c.id == bindparam("b_id"))
        .values(n=bindparam("n"), at=bindparam("at"))
    )
    later = datetime(2027, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    executemany(session, bump, [{"b_id": "r1", "n": 10, "at": later}, {"b_id": "r2", "n": 20, "at": None}])  # fmt: skip
    conn.execute(bump, [{"b_id": "xr1", "n": 10, "at": later}, {"b_id": "xr2", "n": 20, "at": None}])  # fmt: skip
    executemany(session, insert(things), [])  # nothing to do
    got = conn.execute(select(things).where(~things.c.id.startswith("x")).order_by(things.c.id))
    expected = conn.execute(select(things).where(things.c.id.startswith("x")).order_by(things.c.id))
    want = [(r.id[1:], *r[1:]) for r in expected]
    assert [tuple(r) for r in got] == want
    assert want[1][1] == 10 and want[1][5] == later and want[2][5] is None
    # The stored text itself is equal too (what indexes and comparisons see).
    raw = conn.exec_driver_sql(
        "SELECT a.at = b.at FROM precompiled_things a, precompiled_things b"
        " WHERE b.id = 'x' || a.id AND a.at IS NOT NULL"
    ).all()
    assert raw and all(r[0] for r in raw)


def test_batches_read_and_update_as_execute_does(conn: Connection) -> None:
    # update_by_key (one UPDATE … FROM VALUES per 500 rows on SQLite) and fetch_all (one JSON
    # row on SQLite) read and write what execute does; 1,201 rows cross the chunk boundaries.
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from liebian.kit.precompiled import executemany, fetch_all, update_by_key

    session = Session(bind=conn)
    base = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [
        {"id": f"k{i:05d}", "n": i, "status": "open", "flag": bool(i % 2),
         "data": {"i": i} if i % 7 else None, "at": base + timedelta(seconds=i) if i % 5 else None}
        for i in range(1201)
    ]  # fmt: skip
    executemany(session, insert(things), rows)
    assert conn.execute(select(func.count()).select_from(things)).scalar_one() == 1201
    later = datetime(2027, 1, 1, 12, 0, 0, 7, tzinfo=timezone(timedelta(hours=8)))
    update_by_key(
        session, things, "id",
        [{"b_key": f"k{i:05d}", "n": -i, "at": later if i % 2 else None} for i in range(0, 1201, 2)]
        + [{"b_key": "nobody", "n": 1, "at": None}],
    )  # fmt: skip
    stmt = select(things).where(things.c.id.in_(["k00000", "k00001", "k00002", "k00003", "k00007"]))
    want = [tuple(r) for r in conn.execute(stmt.order_by(things.c.id))]
    got = sorted(fetch_all(session, stmt))
    assert got == want
    by_id = {r[0]: r for r in fetch_all(session, select(things))}
    assert len(by_id) == 1201 and "nobody" not in by_id
    assert by_id["k00002"][1] == -2 and by_id["k00002"][5] is None  # updated, at cleared
    assert by_id["k00001"][1] == 1 and by_id["k00001"][5] == base + timedelta(seconds=1)
    assert by_id["k00007"][3] is True and by_id["k00007"][4] is None and by_id["k00014"][4] is None
    assert by_id["k00008"][4] == {"i": 8} and by_id["k01200"][1] == -1200
    assert fetch_all(session, select(things.c.id).where(things.c.id == "nobody")) == []
