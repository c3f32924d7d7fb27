"""The serving process's DuckDB budget: small between analytics queries, larger during them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from liebian.events.store.duckdb_budget import DuckDBBudget

CPUS = os.cpu_count() or 1


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "events.duckdb"))
    yield connection
    connection.close()


def test_idle_between_queries_raised_during_one(con: duckdb.DuckDBPyConnection) -> None:
    budget = DuckDBBudget(con.cursor, query_memory_mb=640, query_threads=CPUS + 1)
    budget.apply_idle()
    assert budget.current() == (1, 96)
    with budget.analytics():
        assert budget.current() == (CPUS + 1, 640)
    assert budget.current() == (1, 96)


def test_during_a_burst_a_query_gets_the_memory_but_not_every_core(
    con: duckdb.DuckDBPyConnection,
) -> None:
    bursting = [True]
    budget = DuckDBBudget(
        con.cursor, query_memory_mb=640, query_threads=CPUS + 1, serving_first=lambda: bursting[0]
    )
    budget.apply_idle()
    with budget.analytics():
        assert budget.current() == (1, 640)
    assert budget.current() == (1, 96) and budget.held_back == 1
    bursting[0] = False
    with budget.analytics():
        assert budget.current() == (CPUS + 1, 640)
    assert budget.held_back == 1


def test_lowered_only_when_the_last_concurrent_query_ends(
    con: duckdb.DuckDBPyConnection,
) -> None:
    budget = DuckDBBudget(con.cursor, query_memory_mb=512, query_threads=2)
    budget.apply_idle()
    entered, release = threading.Event(), threading.Event()

    def long_query() -> None:
        with budget.analytics():
            entered.set()
            release.wait(10)

    other = threading.Thread(target=long_query)
    other.start()
    assert entered.wait(10)
    with budget.analytics():
        assert budget.current() == (2, 512)
    # This query ended, the other still runs: still raised.
    assert budget.current() == (2, 512)
    release.set()
    other.join()
    assert budget.current() == (1, 96)


def test_an_error_in_the_query_still_lowers(con: duckdb.DuckDBPyConnection) -> None:
    budget = DuckDBBudget(con.cursor, query_memory_mb=256, query_threads=2)
    with pytest.raises(duckdb.Error), budget.analytics():
        con.cursor().execute("SELECT * FROM no_such_table")
    assert budget.current() == (1, 96)


def test_a_refused_lowering_is_retried(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB refuses a lower limit while buffers are pinned (a concurrent load): the budget
    must not stay raised for good."""
    refusals = [1]

    class Flaky:
        def __init__(self) -> None:
            self.cur = con.cursor()

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("SET memory_limit = '96MB'") and refusals:
                refusals.pop()
                raise duckdb.OutOfMemoryException("could not free up enough memory")
            return self.cur.execute(sql, *args)

        def close(self) -> None:
            self.cur.close()

    cursor: Callable[[], Any] = Flaky
    budget = DuckDBBudget(cursor, query_memory_mb=300, query_threads=2)
    with budget.analytics():
        pass
    assert budget.current() == (2, 300)  # refused: still raised for now
    deadline = time.monotonic() + 10
    while budget.current() != (1, 96) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not refusals
    assert budget.current() == (1, 96)


def test_served_analytics_run_with_the_raised_budget(
    client: Any, runtime: Any, owner: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from liebian import analytics

    budget: DuckDBBudget = runtime.extras["duckdb_budget"]
    assert budget.current() == (1, 96)
    seen: list[tuple[int, int]] = []
    real = analytics.funnel

    def watched(*args: Any) -> Any:
        seen.append(budget.current())
        return real(*args)

    monkeypatch.setattr(analytics, "funnel", watched)
    client.post(
        "/api/v1/events",
        json=[
            {"event": "view", "event_id": "e1", "user_id": "u1", "ts": "2026-03-01T10:00:00Z"},
            {"event": "buy", "event_id": "e2", "user_id": "u1", "ts": "2026-03-01T10:05:00Z"},
        ],
        headers=owner,
    )
    runtime.flush_events()
    resp = client.post(
        "/api/v1/analytics/funnel",
        json={
            "steps": [{"event": "view"}, {"event": "buy"}],
            "window_seconds": 3600,
            "from": "2026-03-01T00:00:00Z",
            "to": "2026-03-02T00:00:00Z",
        },
        headers=owner,
    )
    assert resp.status_code == 200, resp.text
    assert [step["count"] for step in resp.json()["steps"]] == [1, 1]
    assert seen == [(CPUS, runtime.settings.analytics_memory_mb)]
    assert budget.current() == (1, 96)
