"""Open the event store named by a URL or a path.

- a path (or ``duckdb:///path``): the embedded DuckDB file, default ``<data_dir>/events.duckdb``
- ``clickhouse://user:pass@host:port/db``: a ClickHouse server through clickhouse-connect
- ``chdb://<path or :memory:>[?database=name]``: ClickHouse in process (tests, CI)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from liebian.events.store.base import EventStore


def default_events_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "events.duckdb"


def open_event_store(url_or_path: str | Path, *, query_timeout: float | None = None) -> EventStore:
    """``query_timeout``: seconds a read may run before the engine cancels it (None: no limit)."""
    target = str(url_or_path)
    if target.startswith("chdb://"):
        from liebian.events.store.clickhouse_store import ChdbExecutor, ClickHouseEventStore

        rest = target[len("chdb://") :]
        path, _, query = rest.partition("?")
        database = parse_qs(query).get("database", ["liebian"])[0]
        return ClickHouseEventStore(
            ChdbExecutor(path or ":memory:"), database, query_timeout=query_timeout
        )
    if target.startswith(("clickhouse://", "clickhouses://")):
        from liebian.events.store.clickhouse_store import ClickHouseEventStore, ConnectExecutor

        database = urlsplit(target).path.strip("/") or "default"
        return ClickHouseEventStore(ConnectExecutor(target), database, query_timeout=query_timeout)
    if target.startswith("duckdb://"):
        target = target[len("duckdb://") :]
    from liebian.events.store.duckdb_store import DuckDBEventStore

    db_path = Path(target)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBEventStore(db_path, query_timeout=query_timeout)
