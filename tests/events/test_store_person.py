"""One person in the event store — timeline, merge and PIPL erasure — on DuckDB and ClickHouse
(chdb), the same data and the same answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from liebian.events.store import Alias, EventRow, EventStore, erased_marker

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
WS = "ws_1"


def _seed(store: EventStore) -> None:
    rows = [
        # visitor v1 browses before signing up as u1
        EventRow(WS, "e1", "click", T0, visitor_id="v1", channel="wechat", ip_hash="ip1"),
        EventRow(WS, "e2", "page_view", T0 + timedelta(minutes=1), visitor_id="v1"),
        EventRow(WS, "e3", "signup", T0 + timedelta(minutes=2), visitor_id="v1", user_id="u1"),
        EventRow(
            WS, "e4", "purchase", T0 + timedelta(minutes=3), user_id="u1", revenue=9900,
            currency="CNY", properties={"order_id": "o1"},
        ),
        # another device of the same person, identified in OLTP only (contact alias)
        EventRow(WS, "e5", "page_view", T0 + timedelta(minutes=4), visitor_id="v9"),
        # somebody else
        EventRow(WS, "e6", "purchase", T0 + timedelta(minutes=5), user_id="u2", revenue=100),
        EventRow(WS, "e7", "page_view", T0 + timedelta(minutes=6), visitor_id="v2"),
        # other workspace, same ids
        EventRow("ws_2", "e8", "purchase", T0, user_id="u1", revenue=5),
    ]  # fmt: skip
    store.insert(rows)
    store.add_aliases([Alias(WS, "v1", "u1", T0.replace(tzinfo=None))])


def _ids(store: EventStore, users: list[str], visitors: list[str], **kw: object) -> list[str]:
    page = store.person_events(
        WS, users, visitors, before=kw.get("before"), limit=kw.get("limit", 50)
    )  # type: ignore[arg-type]
    return [e.event_id for e in page]


def test_timeline_is_the_persons_events_newest_first_and_paged(store: EventStore) -> None:
    _seed(store)
    assert _ids(store, ["u1"], ["v9"]) == ["e5", "e4", "e3", "e2", "e1"]
    first = store.person_events(WS, ["u1"], ["v9"], before=None, limit=2)
    assert [e.event_id for e in first] == ["e5", "e4"]
    assert first[1].revenue == 9900 and first[1].currency == "CNY"
    last = first[-1]
    assert _ids(store, ["u1"], ["v9"], before=(last.ts, last.event_id)) == ["e3", "e2", "e1"]
    assert _ids(store, ["nobody"], []) == []
    skipped = store.person_events(
        WS, ["u1"], ["v9"], before=None, limit=50, skip_events=["page_view", "nope"]
    )
    assert [e.event_id for e in skipped] == ["e4", "e3", "e1"]  # e5 and e2 are page views


def test_merge_moves_events_and_aliases_to_the_survivor(store: EventStore) -> None:
    _seed(store)
    store.move_person(WS, "u2", "u1")
    assert _ids(store, ["u1"], []) == ["e6", "e4", "e3", "e2", "e1"]
    assert _ids(store, ["u2"], []) == []
    # the other workspace's u1 is untouched
    rows = store.query(f"SELECT count(*) FROM {store.events_table} WHERE user_id = 'u1'", {})
    assert rows[0][0] == 4  # e3, e4, e6 in WS and e8 in ws_2


def test_erase_pseudonymizes_the_person_and_keeps_the_sums(store: EventStore) -> None:
    _seed(store)
    total = store.query(f"SELECT sum(revenue), count(*) FROM {store.events_table}", {})[0]
    marker = erased_marker("ab" * 16)
    changed = store.erase_person(WS, ["u1"], ["v9"], marker)
    assert changed == 5
    assert _ids(store, ["u1"], ["v9"]) == []
    assert _ids(store, [marker], []) == ["e5", "e4", "e3", "e2", "e1"]
    assert store.query(f"SELECT sum(revenue), count(*) FROM {store.events_table}", {})[0] == total
    leftovers = store.query(
        f"SELECT count(*) FROM {store.events_table} WHERE workspace_id = 'ws_1' AND"
        " (user_id = 'u1' OR visitor_id IN ('v1', 'v9') OR ip_hash = 'ip1')",
        {},
    )
    assert leftovers[0][0] == 0
    aliases = store.query(f"SELECT count(*) FROM {store.aliases_table} WHERE user_id = 'u1'", {})
    assert aliases[0][0] == 0
    # untouched: the other person and the other workspace
    assert _ids(store, ["u2"], ["v2"]) == ["e7", "e6"]
    assert (
        store.query(
            f"SELECT count(*) FROM {store.events_table} WHERE workspace_id = 'ws_2' AND user_id = 'u1'",
            {},
        )[0][0]
        == 1
    )


def test_contact_figures_are_computed_in_the_engine(store: EventStore) -> None:
    """contacts.computed's per-person SQL (reconciliation) answers alike on both engines."""
    from liebian.contacts.computed import _event_figures

    _seed(store)
    store.insert(
        [
            EventRow(WS, "e9", "refund", T0 + timedelta(minutes=7), user_id="u1", revenue=900),
            EventRow(WS, "e10", "click", T0 + timedelta(minutes=8), user_id="u1", channel="sms"),
        ]
    )
    rows = {r[0]: r for r in _event_figures(store, WS)}
    u1 = rows["u1"]
    assert (u1[3], u1[4], int(u1[5]), int(u1[6])) == ("wechat", "sms", 1, 9000)
    assert str(u1[1]).startswith("2026-11-01 08:00") and str(u1[2]).startswith("2026-11-01 08:08")
    assert int(rows["u2"][5]) == 1 and "v9" in rows and "ws_2" not in str(rows)


def test_duckdb_skips_aliases_it_wrote_already_and_forgets_them_on_other_writes(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from liebian.events.store import open_event_store

    store = open_event_store(Path(str(tmp_path)) / "events.duckdb")
    try:
        at = T0.replace(tzinfo=None)

        def owner(visitor: str) -> list[tuple[str, ...]]:
            return store.query("SELECT user_id FROM aliases WHERE visitor_id = $v", {"v": visitor})

        assert store.add_aliases([Alias(WS, "v1", "u1", at), Alias(WS, "v2", "u2", at)]) == 2
        assert store.add_aliases([Alias(WS, "v1", "u1", at)]) == 0  # known: no upsert
        # a shared device changes hands: written, whatever was remembered
        assert store.add_aliases([Alias(WS, "v1", "u1", at), Alias(WS, "v2", "u3", at)]) == 1
        assert owner("v2") == [("u3",)]
        store.move_person(WS, "u3", "u1")  # rewrites the table: the memory is dropped
        assert owner("v2") == [("u1",)]
        assert store.add_aliases([Alias(WS, "v2", "u3", at)]) == 1
        assert owner("v2") == [("u3",)]
        assert store.add_aliases([Alias("ws_2", "v1", "u1", at)]) == 1  # other workspace
    finally:
        store.close()


def test_duckdb_alias_memory_follows_the_loads_identity_map(tmp_path: object) -> None:
    """A load that re-maps a visitor makes the store forget what it remembered writing for it,
    so the next add_aliases of the old mapping is written, not skipped as already known."""
    from pathlib import Path

    from liebian.events.store import open_event_store

    store = open_event_store(Path(str(tmp_path)) / "events.duckdb")
    try:
        at = T0.replace(tzinfo=None)

        def owner(visitor: str) -> list[tuple[str, ...]]:
            return store.query("SELECT user_id FROM aliases WHERE visitor_id = $v", {"v": visitor})

        assert store.add_aliases([Alias(WS, "v1", "u1", at), Alias(WS, "v2", "u2", at)]) == 2
        # a later event of v1 signed in as u9 (a shared device): the load re-maps v1
        later = T0 + timedelta(hours=1)
        store.insert([EventRow(WS, "e-shared", "signup", later, visitor_id="v1", user_id="u9")])
        assert owner("v1") == [("u9",)]
        # v1 back to u1, newer still: written (a stale memory of v1 → u1 would skip it)
        assert store.add_aliases([Alias(WS, "v1", "u1", at + timedelta(hours=2))]) == 1
        assert owner("v1") == [("u1",)]
        assert store.add_aliases([Alias(WS, "v2", "u2", at)]) == 0  # v2 untouched: still known
    finally:
        store.close()
