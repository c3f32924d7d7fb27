"""Time the funnel and the retention matrix over the generated data set.

    /work/venv/bin/python bench/gen_events.py --events 10000000
    /work/venv/bin/python bench/bench_analytics.py [--chdb]

Prints the best and median wall time of --runs for each query, and the process CPU time
(DuckDB's threads included), which is steadier than wall time on a shared machine. --chdb also copies the data into chdb (through a
Parquet file DuckDB writes) and times the same funnel on the ClickHouse backend.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liebian.analytics import funnel, retention
from liebian.analytics.schemas import FunnelQuery, RetentionQuery
from liebian.events.store import EventStore, open_event_store
from liebian.events.store.base import COLUMN_NAMES

WS = "ws_bench"
FUNNEL = FunnelQuery.model_validate(
    {
        "steps": [{"event": "view"}, {"event": "signup"}, {"event": "purchase"}],
        "window_seconds": 7 * 86400,
        "from": datetime(2024, 1, 1, tzinfo=UTC),
        "to": datetime(2024, 3, 1, tzinfo=UTC),
        "breakdown": "channel",
    }
)
RETENTION = RetentionQuery.model_validate(
    {
        "start_event": "signup",
        "return_event": "open",
        "period": "day",
        "periods": 30,
        "from": datetime(2024, 1, 1, tzinfo=UTC),
        "to": datetime(2024, 1, 31, tzinfo=UTC),
    }
)


def timed(fn: Callable[[], Any], runs: int) -> tuple[str, Any]:
    """Run ``fn`` ``runs`` times: 'best / median s wall, best / median s CPU' and its answer."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return (
        f"{min(walls):.3f} s (median {statistics.median(walls):.3f} s;"
        f" CPU {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s)"
    ), out


def bench(store: EventStore, label: str, runs: int, with_retention: bool = True) -> None:
    n = store.count(WS)
    t, res = timed(lambda: funnel(store, WS, FUNNEL), runs)
    counts = [s.count for s in res.steps]
    groups = len(res.breakdown or [])
    print(
        f"{label}: funnel 3 steps, 7-day window, by channel, {n:,} events: {t}"
        f" (steps {counts}, {groups} channels)"
    )
    if with_retention:
        t, res = timed(lambda: retention(store, WS, RETENTION), runs)
        print(
            f"{label}: retention daily x 30 periods, {n:,} events: {t} ({len(res.cohorts)} cohorts)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="/tmp/liebian-bench/events.duckdb")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chdb", action="store_true")
    args = ap.parse_args()
    store = open_event_store(args.db)
    bench(store, "duckdb", args.runs)
    if args.chdb:
        parquet = Path(args.db).with_suffix(".parquet")
        store.connection().execute(  # type: ignore[attr-defined]
            f"COPY (SELECT {', '.join(COLUMN_NAMES)} FROM events) TO $p (FORMAT parquet)",
            {"p": str(parquet)},
        )
        store.close()
        ch = open_event_store("chdb://:memory:?database=bench")
        t0 = time.perf_counter()
        ch.query(
            f"INSERT INTO {ch.events_table} SELECT * FROM file({{p:String}}, Parquet)",
            {"p": str(parquet)},
        )
        print(f"chdb: loaded {ch.count(WS):,} events in {time.perf_counter() - t0:.1f} s")
        bench(ch, "chdb", args.runs)
    else:
        store.close()


if __name__ == "__main__":
    main()
