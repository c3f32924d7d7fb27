"""The flusher's large loads with DuckDB's raised budget, and its next pass started at once
after a pass that loaded something (decision 0058)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from liebian.events import spool as spool_module
from liebian.events.spool import Flusher, Spool
from liebian.events.store.duckdb_budget import DuckDBBudget
from liebian.events.store.duckdb_store import DuckDBEventStore


def _lines(start: int, count: int) -> bytes:
    return b"".join(
        (
            json.dumps(
                {
                    "workspace_id": "ws1",
                    "event_id": f"e{i}",
                    "event": "page_view",
                    "ts": "2024-03-01T00:00:00+08:00",
                    "received_at": "2024-03-01 00:00:01",
                    "visitor_id": f"v{i % 7}",
                }
            )
            + "\n"
        ).encode()
        for i in range(start, start + count)
    )


class Watched:
    """The store, recording DuckDB's (threads, memory MB) while each load runs."""

    def __init__(self, store: DuckDBEventStore, budget: DuckDBBudget) -> None:
        self.store, self.budget = store, budget
        self.seen: list[tuple[str, tuple[int, int]]] = []
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def _wait(self) -> None:
        if self.hold is not None:
            self.holding.set()
            assert self.hold.wait(10)
            self.hold = None

    def insert_ndjson(self, path: Path, *, segment: str | None = None) -> Any:
        self.seen.append(("one", self.budget.current()))
        self._wait()
        return self.store.insert_ndjson(path, segment=segment)

    def insert_segments(self, segments: Sequence[tuple[Path, str]]) -> Any:
        self.seen.append(("group", self.budget.current()))
        self._wait()
        return self.store.insert_segments(segments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    duck = DuckDBEventStore(tmp_path / "events.duckdb")
    yield duck
    duck.close()


def test_large_loads_take_the_raised_budget_small_ones_and_bursts_do_not(
    tmp_path: Path, store: DuckDBEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    bursting = [False]
    budget = DuckDBBudget(
        store.connection, query_memory_mb=640, query_threads=2, serving_first=lambda: bursting[0]
    )
    budget.apply_idle()
    watched = Watched(store, budget)
    spool = Spool(tmp_path / "spool")
    flusher = Flusher(spool, watched, load_budget=budget.loading)  # type: ignore[arg-type]
    small = len(_lines(0, 50))
    monkeypatch.setattr(spool_module, "LARGE_LOAD_BYTES", small * 2)

    spool.append_line(_lines(0, 50))  # below the threshold: the idle budget
    spool.seal()
    assert flusher._tick() == 1
    spool.append_line(_lines(50, 150))  # above it
    spool.seal()
    assert flusher._tick() == 1
    assert [budget for _, budget in watched.seen] == [(1, 96), (2, 640)]
    assert budget.current() == (1, 96)  # lowered after the load

    bursting[0] = True  # answering a burst: a large load keeps the idle budget
    spool.append_line(_lines(200, 150))
    spool.seal()
    flusher._tick()
    assert watched.seen[-1][1] == (1, 96)
    assert store.count("ws1") == 350
    spool.close()


def test_a_failed_large_load_still_lowers_the_budget(
    tmp_path: Path, store: DuckDBEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = DuckDBBudget(store.connection, query_memory_mb=512, query_threads=2)
    budget.apply_idle()
    monkeypatch.setattr(spool_module, "LARGE_LOAD_BYTES", 1)
    spool = Spool(tmp_path / "spool")
    spool.append_line(b'{"workspace_id": "ws1", "event_id": "x", "event": 5}\n{not json\n')
    spool.seal()
    flusher = Flusher(spool, store, load_budget=budget.loading)
    flusher._tick()  # DuckDB refuses the segment: it is quarantined, its good line kept
    assert spool.quarantined_total == 1
    assert budget.current() == (1, 96)
    spool.close()


def test_after_a_pass_that_loaded_the_next_starts_at_once(
    tmp_path: Path, store: DuckDBEventStore
) -> None:
    """The last, partial segment of a burst goes quiet while the loads before it run: it is
    sealed and loaded right after them, not an interval later (here the interval is 60 s)."""
    budget = DuckDBBudget(store.connection, query_memory_mb=256, query_threads=1)
    watched = Watched(store, budget)
    spool = Spool(tmp_path / "spool", max_segment_lines=100, max_segment_quiet=0.3)
    flusher = Flusher(spool, watched, interval=60.0)  # type: ignore[arg-type]
    watched.hold = threading.Event()
    flusher.start()
    try:
        spool.append_line(_lines(0, 60))
        # Fills the first segment (sealed: the flusher wakes) and leaves 20 lines open.
        spool.append_line(_lines(60, 60))
        assert watched.holding.wait(10)  # the flusher is loading the full segment ...
        time.sleep(0.6)  # ... for longer than the open one needs to count as quiet
        watched.hold.set()
        deadline = time.monotonic() + 20
        # Loaded, then its file removed: wait for both (a 60 s interval would miss the deadline).
        while (store.count("ws1") < 120 or spool.sealed_segments()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.count("ws1") == 120
        assert spool.sealed_segments() == []
    finally:
        flusher.stop()
        spool.close()
