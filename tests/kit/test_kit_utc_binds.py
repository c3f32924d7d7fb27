"""The fast SQLite bind of UTC datetimes stores exactly what the composed one stored."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import DateTime

from liebian.kit.db import UTCDateTime


def _slow(value: datetime | None) -> object:
    """process_bind_param then DATETIME's own SQLite processor: what was stored before."""
    t = UTCDateTime()
    impl = DateTime(timezone=True).dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert impl is not None
    return impl(t.process_bind_param(value, sqlite.dialect()))


def test_sqlite_datetime_text_is_unchanged() -> None:
    fast = UTCDateTime().bind_processor(sqlite.dialect())
    assert fast is not None
    rng = random.Random(3)
    shanghai = timezone(timedelta(hours=8))
    samples = [
        datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC),  # no microseconds: still six digits
        datetime(1, 1, 1, 8, 0, tzinfo=shanghai) + timedelta(days=1),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=shanghai),
        # The instant of the first, in another zone: the text cache keys equal instants alike.
        datetime(2026, 12, 3, 9, 2, 3, tzinfo=shanghai),
    ]
    samples += [
        datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(50))
        for _ in range(500)
    ]
    for value in samples + samples:  # twice: the second time from the text cache
        assert fast(value) == _slow(value)
    assert fast(None) is None
    with pytest.raises(ValueError, match="naive"):
        fast(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        fast("2026-01-01")


def test_sqlite_round_trip_and_postgres_unchanged() -> None:
    engine = create_engine("sqlite://")
    table = Table(
        "t", MetaData(), Column("k", String, primary_key=True), Column("at", UTCDateTime())
    )
    table.create(engine)
    when = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"k": "a", "at": when}, {"k": "b", "at": None}])
        assert conn.execute(select(table.c.at).where(table.c.k == "a")).scalar_one() == when
        assert conn.execute(select(table.c.at).where(table.c.at == when)).scalar_one() == when
        assert conn.execute(select(table.c.at).where(table.c.k == "b")).scalar_one() is None
    # PostgreSQL keeps the composed path: an aware UTC datetime goes to the driver.
    process = UTCDateTime().bind_processor(postgresql.dialect())
    value = (
        process(when) if process else UTCDateTime().process_bind_param(when, postgresql.dialect())
    )
    assert value == when and value.tzinfo is not None and value.utcoffset() == timedelta(0)


def _slow_read(value: str | None) -> object:
    """DATETIME's own SQLite result processor then process_result_value: what was read before."""
    impl = DateTime().dialect_impl(sqlite.dialect()).result_processor(sqlite.dialect(), None)
    assert impl is not None
    return UTCDateTime().process_result_value(impl(value), sqlite.dialect())


def test_sqlite_datetime_read_is_unchanged() -> None:
    fast = UTCDateTime().dialect_impl(sqlite.dialect()).result_processor(sqlite.dialect(), None)
    assert fast is not None
    texts = [None, "2026-12-03 15:01:30.084368", "2026-12-03 15:01:30", "2026-12-03",
             "2026-12-03T15:01:30.5", "2026-12-03 15:01:30.084368+08:00", "0001-01-01 00:00:00.000000",
             "9999-12-31 23:59:59.999999", "2026-12-03 15:01:30Z"]  # fmt: skip
    for text in texts:
        assert fast(text) == _slow_read(text), text
        got = fast(text)
        assert got is None or got.tzinfo is UTC
    for bad in ("2026-13-01 00:00:00", "yesterday", ""):
        with pytest.raises(ValueError):
            _slow_read(bad)
        with pytest.raises(ValueError):
            fast(bad)
