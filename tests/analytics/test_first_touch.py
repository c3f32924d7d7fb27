"""First-touch channel across batches, late events, same-millisecond ties and aliases.

DuckDB keeps each person's earliest touch in a table merged at every insert
(events/store/duckdb_first_touch.py); ClickHouse computes it from the events in the query.
The hand-worked cases run on both; the random ones check that DuckDB's merged table equals
one rebuilt from scratch and that both backends give the same funnels (which also pits
DuckDB's ASOF chain against ClickHouse's windowFunnel + arrayFold on the steps themselves).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from liebian.analytics import funnel
from liebian.analytics.schemas import FunnelQuery
from liebian.events.store import Alias, EventRow, EventStore, duckdb_first_touch, open_event_store

from .fixtures import T, ev, s

WS = "wsft"


def _q(**kw: Any) -> FunnelQuery:
    base: dict[str, Any] = {
        "steps": [{"event": "view"}, {"event": "signup"}],
        "window_seconds": 3600,
        "from": T,
        "to": T + timedelta(days=1),
        "breakdown": "channel",
    }
    base.update(kw)
    return FunnelQuery.model_validate(base)


def _by_channel(store: EventStore, **kw: Any) -> dict[str | None, list[int]]:
    res = funnel(store, WS, _q(**kw))
    assert res.breakdown is not None
    return {b.value: [st.count for st in b.steps] for b in res.breakdown}


def test_first_touch_across_batches_late_events_ties_and_aliases(store: EventStore) -> None:
    b1 = [
        # u1: a later batch brings an earlier click: "a" (late) beats "b".
        ev(WS, "click", s(-50), "u1", channel="b"),
        ev(WS, "view", s(0), "u1"),
        ev(WS, "signup", s(100), "u1"),
        # u2: "z" now, "c" at the same millisecond later: the smaller name wins either way.
        ev(WS, "click", s(-10), "u2", channel="z"),
        ev(WS, "view", s(0), "u2"),
        # v3: an anonymous click, aliased to u3 only in the last step.
        ev(WS, "click", s(-30), None, visitor_id="v3", channel="m"),
        # u7: an empty channel does not count; its only touch comes after its view.
        ev(WS, "click", s(-90), "u7", channel=""),
        ev(WS, "view", s(0), "u7"),
    ]
    store.insert(b1)
    b2 = [
        ev(WS, "click", s(-100), "u1", channel="a"),
        ev(WS, "click", s(-10), "u2", channel="c"),
        ev(WS, "click", s(-5), "u2", channel="a"),  # later than u2's first touch
        ev(WS, "click", s(-20), "u3", channel="n"),
        ev(WS, "view", s(0), "u3"),
        ev(WS, "signup", s(200), "u3"),
        ev(WS, "click", s(500), "u7", channel="k"),
        # u5's click was made on visitor v5a, later re-identified as u6 (shared device).
        ev(WS, "click", s(-60), "u5", visitor_id="v5a", channel="r"),
        ev(WS, "view", s(0), "u5", visitor_id="v5b"),
        ev(WS, "view", s(10), "u6", visitor_id="v6"),
        ev(WS, "signup", s(300), "u6", visitor_id="v6"),
    ]
    store.insert(b2)
    store.insert(b1[:4])  # a retried batch changes nothing
    before = _by_channel(store)
    # Without aliases u3 first touched "n"; v3 is someone else and u5 still has "r".
    assert before == {"a": [1, 1], "c": [1, 0], "n": [1, 1], "r": [1, 0], "k": [1, 0], None: [1, 1]}
    store.add_aliases([Alias(WS, "v3", "u3"), Alias(WS, "v5a", "u6")])
    assert _by_channel(store) == {
        "a": [1, 1],  # u1
        "c": [1, 0],  # u2
        "m": [1, 1],  # u3 through v3, earlier than its own "n"
        "r": [1, 1],  # u6 through v5a
        "k": [1, 0],  # u7
        None: [1, 0],  # u5 lost its only touch to u6
    }


# -- random batches -----------------------------------------------------------------------

CHANNELS = ["wx_group", "moments", "douyin", "poster", "", None]


def _random_history(seed: int) -> list[tuple[list[EventRow], list[Alias]]]:
    """Batches of events (in no particular time order, with retries) and the aliases added
    after each. Timestamps fall on whole seconds so that ties between channels are common."""
    rng = random.Random(seed)
    visitors = [f"v{i}" for i in range(60)]
    users = [f"u{i}" for i in range(25)]
    sent: list[EventRow] = []
    history: list[tuple[list[EventRow], list[Alias]]] = []
    alias_time = datetime(2024, 1, 1, tzinfo=UTC)
    for b in range(8):
        rows = []
        for i in range(rng.randint(20, 80)):
            event = rng.choice(["click", "click", "view", "view", "signup", "open"])
            user = rng.choice(users) if rng.random() < 0.4 else None
            rows.append(
                EventRow(
                    workspace_id=rng.choice([WS, WS, WS, "other"]),
                    event_id=f"r{seed}-{b}-{i}",
                    event=event,
                    ts=T + timedelta(seconds=rng.randint(-300, 3000)),
                    visitor_id=rng.choice(visitors) if user is None or rng.random() < 0.7 else None,
                    user_id=user,
                    channel=rng.choice(CHANNELS) if event in ("click", "view") else None,
                )
            )
        if sent and rng.random() < 0.5:
            rows += rng.sample(sent, min(len(sent), 10))  # retried events
        sent += rows
        aliases = []
        for _ in range(rng.randint(0, 4)):
            alias_time += timedelta(seconds=1)  # later aliases win on both backends
            aliases.append(Alias(WS, rng.choice(visitors), rng.choice(users), alias_time))
        history.append((rows, aliases))
    return history


def _replay(store: EventStore, history: list[tuple[list[EventRow], list[Alias]]]) -> None:
    for rows, aliases in history:
        store.insert(rows)
        store.add_aliases(aliases)


def _table(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(f"SELECT * FROM {duckdb_first_touch.TABLE} ORDER BY ALL").fetchall()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merged_table_equals_a_rebuild(tmp_path: Path, seed: int) -> None:
    store = open_event_store(tmp_path / "events.duckdb")
    try:
        _replay(store, _random_history(seed))
        con = store.connection()  # type: ignore[attr-defined]
        merged = _table(con)
        assert any(r[0] == WS for r in merged) and any(r[0] == "other" for r in merged)
        con.execute("BEGIN TRANSACTION")
        duckdb_first_touch.rebuild(con)
        assert _table(con) == merged
        con.execute("ROLLBACK")
    finally:
        store.close()


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_duckdb_and_clickhouse_agree_on_random_batches(tmp_path: Path, seed: int) -> None:
    history = _random_history(seed)
    duck = open_event_store(tmp_path / "events.duckdb")
    ch = open_event_store(f"chdb://:memory:?database=t_{uuid.uuid4().hex[:12]}")
    try:
        _replay(duck, history)
        _replay(ch, history)
        three = [{"event": "view"}, {"event": "click"}, {"event": "signup"}]
        for q in (
            _q(),
            _q(steps=[{"event": "view"}, {"event": "open"}], window_seconds=600),
            _q(steps=three, window_seconds=900),
            _q(steps=three, window_seconds=900, breakdown=None),
        ):
            a, b = funnel(duck, WS, q), funnel(ch, WS, q)
            assert a.steps[-1].count > 0  # people reach the last step: not a trivial case
            if q.breakdown:
                assert a.breakdown and len(a.breakdown) > 2  # several channels
            assert a.model_dump() == b.model_dump()
    finally:
        duck.close()
        ch.close()


def test_table_is_built_when_a_file_lacks_it(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = open_event_store(path)
    _replay(store, _random_history(7))
    expected = funnel(store, WS, _q()).model_dump()
    con = store.connection()  # type: ignore[attr-defined]
    # What a file written before the table existed looks like.
    con.execute(f"DROP TABLE {duckdb_first_touch.TABLE}")
    con.execute("DELETE FROM store_meta WHERE key = 'first_touch_hash'")
    store.close()
    store = open_event_store(path)
    try:
        assert funnel(store, WS, _q()).model_dump() == expected
    finally:
        store.close()


def test_table_follows_person_keys_recomputed_under_a_new_hash(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = open_event_store(path)
    _replay(store, _random_history(8))
    expected = funnel(store, WS, _q()).model_dump()
    con = store.connection()  # type: ignore[attr-defined]
    # What a file written by a DuckDB whose hash() differed looks like: other keys, other probe.
    con.execute("UPDATE events SET person_key = person_key + 1")
    con.execute(f"UPDATE {duckdb_first_touch.TABLE} SET person_key = person_key + 1")
    con.execute("UPDATE store_meta SET value = 'old' WHERE key LIKE '%hash'")
    store.close()
    store = open_event_store(path)
    try:
        con = store.connection()  # type: ignore[attr-defined]
        stored = con.execute(
            f"SELECT count(*) FROM {duckdb_first_touch.TABLE} f WHERE NOT EXISTS"
            " (SELECT 1 FROM events e WHERE e.person_key = f.person_key)"
        ).fetchone()
        assert stored == (0,)  # every row carries a key the events have now
        assert funnel(store, WS, _q()).model_dump() == expected
    finally:
        store.close()
