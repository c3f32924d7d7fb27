from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liebian.events.store import EventStore, open_event_store


@pytest.fixture(params=["duckdb", "chdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """Each event engine on the same fixtures (chdb: one database per test in the process's
    single embedded server)."""
    if request.param == "duckdb":
        s = open_event_store(tmp_path / "events.duckdb")
    else:
        s = open_event_store(f"chdb://:memory:?database=t_{uuid.uuid4().hex[:12]}")
    yield s
    s.close()
