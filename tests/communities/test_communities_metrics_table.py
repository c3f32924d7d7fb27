"""The group metrics read through DuckDB's ``community_events`` table (kept at load) are the
metrics computed from the events themselves — after batches with repeats, a contact merge, a
PIPL erasure and a reopen of the file (events/store/duckdb_community.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from liebian.communities.metrics import By, group_metrics
from liebian.events.store import EventRow, open_event_store
from liebian.events.store.duckdb_store import DuckDBEventStore

WS, CMY = "ws_mt", "cmy_01JDMETRICSTABLEAAAAAAAAAA"
T0 = datetime(2026, 10, 20, 3, 0, tzinfo=UTC)
BYS: tuple[By, ...] = ("group", "tier", "community")
EVENTS = ("community_view", "group_routed", "group_joined", "group_left", "group_message",
          "group_violation", "first_day_task")  # fmt: skip


def _batch(rng: random.Random, start: int, n: int) -> list[EventRow]:
    rows = []
    for i in range(start, start + n):
        event = rng.choice((*EVENTS, "group_message", "group_message", "purchase", "page_view"))
        g = rng.randrange(6)
        props: dict[str, object] | None = {
            "community_id": rng.choice((CMY, CMY, CMY, "cmy_other")),
            "group_id": f"g{g}" if event != "community_view" else None,
            "tier": f"t{g % 3}" if g < 5 else None,  # g5 has no tier
        }
        if event in ("purchase", "page_view"):
            props = {"nested": {"community_id": CMY}} if i % 2 else None
        who = rng.randrange(40)
        rows.append(EventRow(
            WS, f"e{i}", event, T0 + timedelta(minutes=rng.randrange(60 * 24 * 20)),
            user_id=f"u{who}" if who % 3 else None, visitor_id=f"v{who}",
            revenue=rng.randrange(100, 5000) if event == "purchase" else None,
            properties={k: v for k, v in props.items() if v is not None} if props else None,
        ))  # fmt: skip
    return rows


def _same(store: DuckDBEventStore) -> None:
    assert store.community_table == "community_events"
    for tz, start, days in (
        ("Asia/Shanghai", T0, 20),
        ("America/New_York", T0 - timedelta(days=2), 25),
    ):
        end = start + timedelta(days=days)
        for by in BYS:
            kept = group_metrics(store, WS, CMY, start, end, by, tz)
            store.community_table = None  # the events themselves
            try:
                scratch = group_metrics(store, WS, CMY, start, end, by, tz)
            finally:
                del store.community_table
            assert kept == scratch, (tz, by)
            assert kept.days and kept.summary


def test_metrics_through_the_table_equal_metrics_from_the_events(tmp_path: Path) -> None:
    rng = random.Random(13)
    path = tmp_path / "events.duckdb"
    store = open_event_store(path)
    assert isinstance(store, DuckDBEventStore)
    try:
        first = _batch(rng, 0, 700)
        store.insert(first)
        store.insert(first[:50] + _batch(rng, 700, 700))  # repeats are stored once
        _same(store)
        n = store.query("SELECT count(*) FROM community_events", {})[0][0]
        assert 0 < n < 1400
        store.move_person(WS, "u1", "u2")
        store.erase_person(WS, ["u4"], ["v5", "v6"], "erased:abc")
        _same(store)
    finally:
        store.close()
    # A file whose table is missing (or from before it) is filled on open.
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("DROP TABLE community_events")
    con.execute("DELETE FROM store_meta WHERE key = 'community_events_hash'")
    con.close()
    store = open_event_store(path)
    assert isinstance(store, DuckDBEventStore)
    try:
        _same(store)
    finally:
        store.close()
