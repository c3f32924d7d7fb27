"""The PostgreSQL tests' emptier (tests/conftest.py) does not wait for good behind a
connection an earlier test left inside a transaction: it ends that session and empties."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("LIEBIAN_TEST_DATABASE_URL", "")


@pytest.mark.skipif(not PG_URL, reason="needs LIEBIAN_TEST_DATABASE_URL")
def test_a_session_left_in_a_transaction_is_ended_not_waited_for(
    _pg_database: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, emptier = _pg_database
    emptier.empty()
    leftover = create_engine(url)
    conn = leftover.connect()
    try:
        with leftover.begin() as setup:
            setup.execute(
                text(
                    "INSERT INTO workspaces (id, name, timezone, created_at)"
                    " VALUES ('w1', 'x', 'Asia/Shanghai', now())"
                )
            )
        conn.execute(text("UPDATE workspaces SET name = 'y'"))
        # Left open, holding the row's lock, as a thread nobody stopped would.
        emptier.empty(lock_timeout="300ms")
        out = capsys.readouterr().out
        assert "left behind by an earlier test, ended" in out and "UPDATE workspaces" in out
        with emptier.engine.connect() as check:
            assert check.execute(text("SELECT count(*) FROM workspaces")).scalar() == 0
    finally:
        # Closed here: a terminated connection left to the collector trips CPython 3.11.7
        # ("AST constructor recursion depth mismatch" at the session's end).
        with contextlib.suppress(Exception):
            conn.close()
        leftover.dispose()
