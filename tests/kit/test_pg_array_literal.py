"""kit.db.pg_array: a PostgreSQL array literal the server reads back as the values given."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from liebian.kit.db import pg_array

PG_URL = os.environ.get("LIEBIAN_TEST_DATABASE_URL", "")
AWKWARD = ["plain", 'a "quoted" word', "back\\slash", "NULL", "", "comma, brace } {", "中文", None]


def test_the_literal_form() -> None:
    assert pg_array([]) == "{}"
    assert pg_array(["a", "b"]) == '{"a","b"}'
    assert pg_array(["a", None]) == '{"a",NULL}'
    assert pg_array(['x"y', "p\\q"]) == '{"x\\"y","p\\\\q"}'
    assert pg_array(iter(["a"])) == '{"a"}'


@pytest.mark.skipif(not PG_URL, reason="needs LIEBIAN_TEST_DATABASE_URL (PostgreSQL)")
def test_postgresql_reads_back_the_values() -> None:
    engine = create_engine(PG_URL)
    stamps = [datetime(2026, 12, 3, 18, 0, 0, 123456, tzinfo=UTC),
              datetime(2026, 12, 3, 8, 0, tzinfo=timezone(timedelta(hours=8))), None]  # fmt: skip
    try:
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT CAST(:a AS text[]), CAST(:t AS timestamptz[]), CAST(:e AS text[])"),
                {"a": pg_array(AWKWARD), "t": pg_array(stamps), "e": pg_array([])},
            ).one()
    finally:
        engine.dispose()
    assert got[0] == AWKWARD
    assert got[1] == stamps
    assert got[2] == []
