"""The ``store`` fixture: each event engine (DuckDB file, ClickHouse SQL through chdb) on the
same data. Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liebian.events.store import EventStore, open_event_store


@pytest.fixture(params=["duckdb", "chdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """chdb runs one embedded server per process, so each test gets its own database in it
    instead of its own directory."""
    if request.param == "duckdb":
        s = open_event_store(tmp_path / "events.duckdb")
    else:
        s = open_event_store(f"chdb://:memory:?database=t_{uuid.uuid4().hex[:12]}")
    yield s
    s.close()
