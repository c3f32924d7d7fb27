"""The group metrics read through DuckDB's ``community_events`` table (kept at load) are the
metrics computed from the events themselves — after batches with repeats, a contact merge, a
PIPL erasure and a reopen of the file (events/store/duckdb_community.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from liebian.communities import metrics
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


# 00:00 in Shanghai and in New York (EDT until 2026-11-01, a DST change inside the ranges).
SH_MIDNIGHT = datetime(2026, 10, 19, 16, 0, tzinfo=UTC)
NY_MIDNIGHT = datetime(2026, 10, 20, 4, 0, tzinfo=UTC)
CASES = (  # zone, start, length: partial first and last days, whole days, less than a day
    ("Asia/Shanghai", T0, timedelta(days=20)),
    ("Asia/Shanghai", SH_MIDNIGHT, timedelta(days=21)),
    ("Asia/Shanghai", T0 + timedelta(days=5), timedelta(hours=20)),
    ("America/New_York", T0 - timedelta(days=2), timedelta(days=25)),
    ("America/New_York", NY_MIDNIGHT, timedelta(days=19, hours=1)),
)


def _same(
    store: DuckDBEventStore, cases: tuple[tuple[str, datetime, timedelta], ...] = CASES
) -> None:
    assert store.community_table == "community_events"
    assert store.community_days_table == "community_days"
    read: list[str] = []
    query = store.query
    store.query = lambda sql, params: read.append(sql) or query(sql, params)  # type: ignore[method-assign]
    rolled = 0
    try:
        for tz, start, length in cases:
            end = start + length
            for by in BYS:
                read.clear()
                answer = metrics.compute(store, WS, CMY, start, end, by, tz)
                kept = answer.model()
                # The day rows came from the kept day counts where the zone is the workspace's
                # rollup zone and the range holds a whole local day.
                used = any("FROM community_days" in q for q in read)
                assert used == (store.rollup_zone(WS) == tz and length >= timedelta(days=1))
                rolled += used
                store.community_table = None  # the events themselves
                store.community_days_table = None
                try:
                    scratch = group_metrics(store, WS, CMY, start, end, by, tz)
                finally:
                    del store.community_table
                    del store.community_days_table
                assert kept == scratch, (tz, start, by)
                assert kept.days and kept.summary
                # The endpoint's document (written without a model per day row) is the model's.
                assert orjson.loads(answer.json()) == kept.model_dump(mode="json")
    finally:
        del store.query
    assert rolled == 3 * sum(
        store.rollup_zone(WS) == tz and n >= timedelta(days=1) for tz, _, n in cases
    )
    assert rolled


def _by_hand(rows: list[EventRow], start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """The by-group summary's counts worked out in Python from the stored rows (an oracle
    apart from the SQL: the windows count back from the range's end)."""
    seen: dict[str, EventRow] = {r.event_id: r for r in reversed(rows)}  # first copy kept
    out: dict[str, dict[str, int]] = {}
    people: dict[tuple[str, str], set[str]] = {}
    viewers: set[str] = set()
    for r in seen.values():
        p = r.properties or {}
        if p.get("community_id") != CMY or r.event not in EVENTS or not start <= r.ts < end:
            continue
        who = r.user_id or r.visitor_id or ""
        if r.event == "community_view":
            viewers.add(who)
            continue
        key = str(p.get("group_id") or "")
        c = out.setdefault(key, dict.fromkeys(
            ("joins", "leaves", "messages", "violations", "messages_7d", "messages_14d",
             "messages_30d"), 0))  # fmt: skip
        name = {"group_joined": "joins", "group_left": "leaves", "group_message": "messages",
                "group_violation": "violations"}.get(r.event)  # fmt: skip
        if name:
            c[name] += 1
        if r.event in ("group_joined", "first_day_task"):
            people.setdefault((key, r.event), set()).add(who)
        for n in (7, 14, 30):
            if r.event == "group_message" and r.ts >= end - timedelta(days=n):
                c[f"messages_{n}d"] += 1
                people.setdefault((key, f"active_{n}d"), set()).add(who)
    for key, c in out.items():
        c["viewers"] = len(viewers)
        c["first_day_done"] = len(people.get((key, "first_day_task"), ()))
        for n in (7, 14, 30):
            c[f"active_{n}d"] = len(people.get((key, f"active_{n}d"), ()))
    return out


def test_metrics_through_the_table_equal_metrics_from_the_events(tmp_path: Path) -> None:
    rng = random.Random(13)
    path = tmp_path / "events.duckdb"
    store = open_event_store(path)
    assert isinstance(store, DuckDBEventStore)
    try:
        first = _batch(rng, 0, 700)
        store.insert(first)
        stored = first[:50] + _batch(rng, 700, 700)
        store.insert(stored)  # repeats are stored once
        _same(store)
        start, end = T0 + timedelta(days=1, hours=5), T0 + timedelta(days=17, hours=3)
        summary = group_metrics(store, WS, CMY, start, end, "group").summary
        expected = _by_hand(first + stored, start, end)
        assert {r.key: {k: getattr(r, k) for k in expected[r.key]} for r in summary} == expected
        n = store.query("SELECT count(*) FROM community_events", {})[0][0]
        assert 0 < n < 1400
        store.insert(_batch(rng, 1400, 40))  # a small batch onto days already counted
        store.move_person(WS, "u1", "u2")
        store.erase_person(WS, ["u4"], ["v5", "v6"], "erased:abc")
        _same(store)
        store.set_rollup_zone(WS, "America/New_York")  # the days are counted again in it
        store.insert(_batch(rng, 1440, 40))
        _same(store, CASES[3:])
    finally:
        store.close()
    # A file whose table is missing (or from before it) is filled on open.
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("DROP TABLE community_events")
    con.execute("DROP TABLE community_days")
    con.execute("DELETE FROM store_meta WHERE key = 'community_tables_v2'")
    con.close()
    store = open_event_store(path)
    assert isinstance(store, DuckDBEventStore)
    try:
        _same(store, CASES[3:])
    finally:
        store.close()
