"""Sessions for evaluation reads that never wait on the SQLite writer lock.

The process's sessions begin every SQLite transaction IMMEDIATE (kit/db.py), which takes the
writer lock even to read. Evaluating a segment over a million contacts takes a while, and
holding the lock meanwhile would stall every join and help. On SQLite, evaluation therefore
reads through a second engine whose connections run plain autocommit SELECTs (WAL readers
never block and are never blocked); on PostgreSQL the ordinary sessions already read
without locks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

_KEY = "segments.reader"


def reader_factory(engine: Engine, extras: dict[str, Any] | None = None) -> sessionmaker[Session]:
    if extras is not None and _KEY in extras:
        factory: sessionmaker[Session] = extras[_KEY]
        return factory
    if engine.dialect.name == "sqlite":
        reader = create_engine(engine.url, poolclass=NullPool)

        @event.listens_for(reader, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # autocommit: each SELECT reads the last commit
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA query_only=ON")
            cur.close()

        factory = sessionmaker(bind=reader, expire_on_commit=False)
    else:
        factory = sessionmaker(bind=engine, expire_on_commit=False)
    if extras is not None:
        extras[_KEY] = factory
    return factory
