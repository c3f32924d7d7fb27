from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from liebian.events.store import Alias, EventRow, EventStore

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _row(event_id: str, ws: str = "ws1", **kw: object) -> EventRow:
    return EventRow(workspace_id=ws, event_id=event_id, event="click", ts=T0, **kw)  # type: ignore[arg-type]


def test_same_event_id_is_stored_once(store: EventStore) -> None:
    # e1 twice in one batch and again in a later batch: one row.
    first = store.insert([_row("e1"), _row("e1"), _row("e2")])
    assert (first.inserted, first.duplicates) == (2, 1)
    again = store.insert([_row("e1"), _row("e3")])
    assert (again.inserted, again.duplicates) == (1, 1)
    assert store.count("ws1") == 3


def test_event_ids_are_scoped_per_workspace(store: EventStore) -> None:
    # The same id in two workspaces is two events: idempotency keys belong to the sender.
    store.insert([_row("e1", ws="ws1"), _row("e1", ws="ws2")])
    assert store.count("ws1") == 1
    assert store.count("ws2") == 1


def test_row_round_trip(store: EventStore) -> None:
    store.insert(
        [
            _row(
                "e1",
                visitor_id="v1",
                channel="wx_group",
                is_qr=True,
                revenue=1999,
                currency="CNY",
                properties={"sku": "A1", "n": 2},
            )
        ]
    )
    table = store.events_table
    sel = (
        f"SELECT event, visitor_id, channel, is_qr, is_bot, revenue, currency, properties"
        f" FROM {table}"
    )
    rows = store.query(sel, {})
    event, visitor, channel, is_qr, is_bot, revenue, currency, props = rows[0]
    assert (event, visitor, channel, bool(is_qr), bool(is_bot)) == (
        "click",
        "v1",
        "wx_group",
        True,
        False,
    )
    assert (int(revenue), currency, props) == (1999, "CNY", '{"sku":"A1","n":2}')
    assert store.event_names("ws1") == {"click"}


def test_ndjson_segment_is_loaded_once(store: EventStore, tmp_path: Path) -> None:
    seg = tmp_path / "seg.ndjson"
    seg.write_bytes(b"".join(_row(f"e{i}").to_json_line() for i in range(5)))
    assert store.insert_ndjson(seg, segment="seg-1").inserted == 5
    # A replay after a crash between commit and delete: skipped by name.
    assert store.insert_ndjson(seg, segment="seg-1").inserted == 0
    assert store.segment_loaded("seg-1")
    assert store.count("ws1") == 5


def test_iso_timestamps_with_offset_are_utc(store: EventStore, tmp_path: Path) -> None:
    seg = tmp_path / "seg.ndjson"
    seg.write_text(
        '{"workspace_id":"ws1","event_id":"x","event":"view","ts":"2024-03-01T20:00:00+08:00"}\n'
    )
    store.insert_ndjson(seg)
    ts_sql = (
        "strftime(ts, '%Y-%m-%d %H:%M:%S')"
        if store.dialect == "duckdb"
        else "formatDateTime(ts, '%Y-%m-%d %H:%i:%S')"
    )
    assert store.query(f"SELECT {ts_sql} FROM {store.events_table}", {}) == [
        ("2024-03-01 12:00:00",)
    ]


def test_latest_alias_wins(store: EventStore) -> None:
    store.add_aliases([Alias("ws1", "v1", "u1", datetime(2024, 1, 1, tzinfo=UTC))])
    store.add_aliases([Alias("ws1", "v1", "u2", datetime(2024, 1, 2, tzinfo=UTC))])
    rows = store.query(f"SELECT visitor_id, user_id FROM {store.aliases_source()}", {})
    assert rows == [("v1", "u2")]


def test_duckdb_person_keys_are_stored_and_backfilled(tmp_path: Path) -> None:
    import duckdb

    from liebian.events.store import open_event_store

    # A file from before events.person_key existed: no column, no recorded hash probe.
    path = tmp_path / "old.duckdb"
    store = open_event_store(path)
    store.insert([_row("e1", visitor_id="v1"), _row("e2", visitor_id="v2", user_id="u2")])
    store.close()
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE events DROP COLUMN person_key")
    con.execute("DELETE FROM store_meta")
    con.close()

    store = open_event_store(path)
    store.insert([_row("e3", visitor_id="v3", user_id="")])
    rows = store.query(
        "SELECT event_id, person_key = hash(coalesce(nullif(user_id, ''), visitor_id)),"
        " person_key = hash(CASE event_id WHEN 'e2' THEN 'u2' ELSE 'v' || right(event_id, 1) END)"
        " FROM events ORDER BY event_id",
        {},
    )
    assert rows == [("e1", True, True), ("e2", True, True), ("e3", True, True)]
    store.close()

    # A recorded probe that no longer matches (another DuckDB's hash): recomputed on open.
    con = duckdb.connect(str(path))
    con.execute("UPDATE events SET person_key = 0")
    con.execute("UPDATE store_meta SET value = 'stale' WHERE key = 'person_hash'")
    con.close()
    store = open_event_store(path)
    assert store.query("SELECT count(*) FROM events WHERE person_key = 0", {}) == [(0,)]
    store.close()
