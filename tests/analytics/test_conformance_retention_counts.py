"""Retention and bucketed counts worked out by hand on fixtures.load_retention.

Local (Asia/Shanghai) view of the fixture, range [Mar 1 00:00, Mar 3 00:00) local:
- cohort 2024-03-01: r1 (signup 23:59), r3 (00:30), r6 (10:00)
    p0: r3 (opens 09:00 and 10:00; its 08:00... open before signup ignored) -> 1
    p1: r1 (00:00 Mar 2) -> 1;  p2: r1 (18:00 Mar 3) -> 1;  p3: r6 (as visitor vr6, Mar 4) -> 1
- cohort 2024-03-02: r2 (00:00), r4 (first signup in range 09:00)
    p0: r2 (01:00), r4 (10:00) -> 2;  p1: 0;  p2: 0;  p3: r2 (23:00 Mar 5) -> 1
- r5 signs up exactly at `to`: excluded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from liebian.analytics import counts, new_vs_returning, retention
from liebian.analytics.schemas import CountsQuery, NewReturningQuery, RetentionQuery
from liebian.events.store import EventStore

from .fixtures import ev, load_retention

FROM = datetime(2024, 2, 29, 16, 0, tzinfo=UTC)  # Mar 1 00:00 in Shanghai
TO = datetime(2024, 3, 2, 16, 0, tzinfo=UTC)  # Mar 3 00:00 in Shanghai


def _rq(**kw: Any) -> RetentionQuery:
    base: dict[str, Any] = {
        "start_event": "signup",
        "return_event": "open",
        "period": "day",
        "periods": 3,
        "from": FROM,
        "to": TO,
    }
    base.update(kw)
    return RetentionQuery.model_validate(base)


def _cohorts(cs: Any) -> list[tuple[str, int, list[int]]]:
    return [(c.start, c.size, c.retained) for c in cs]


def test_daily_retention(store: EventStore) -> None:
    load_retention(store)
    res = retention(store, "wsr", _rq())
    assert _cohorts(res.cohorts) == [
        ("2024-03-01", 3, [1, 1, 1, 1]),
        ("2024-03-02", 2, [2, 0, 0, 1]),
    ]


def test_weekly_retention(store: EventStore) -> None:
    load_retention(store)
    # Everyone's cohort is the week of Monday Feb 26. Week 0 (to Sun Mar 3): r1 r2 r3 r4;
    # week 1: r2 (Mar 5) and r6 (Mar 4).
    res = retention(store, "wsr", _rq(period="week", periods=1))
    assert _cohorts(res.cohorts) == [("2024-02-26", 5, [4, 2])]


def test_retention_by_first_touch_channel(store: EventStore) -> None:
    load_retention(store)
    res = retention(store, "wsr", _rq(breakdown="channel"))
    assert res.breakdown is not None
    got = {b.value: _cohorts(b.cohorts) for b in res.breakdown}
    assert got == {
        "a": [("2024-03-01", 2, [1, 1, 1, 0])],  # r1 r3
        "b": [("2024-03-01", 1, [0, 0, 0, 1]), ("2024-03-02", 1, [1, 0, 0, 1])],  # r6, r2
        None: [("2024-03-02", 1, [1, 0, 0, 0])],  # r4
    }
    # The breakdown partitions the same people as the plain matrix.
    assert _cohorts(res.cohorts) == _cohorts(retention(store, "wsr", _rq()).cohorts)


def test_daily_counts_follow_the_shanghai_day(store: EventStore) -> None:
    load_retention(store)
    # A second delivery of an open with a known id changes nothing (dedupe).
    first_open = store.query(
        f"SELECT event_id FROM {store.events_table} WHERE event = 'open' ORDER BY ts LIMIT 1",
        {},
    )[0][0]
    dup = ev("wsr", "open", datetime(2024, 3, 5, tzinfo=UTC), "r9")
    dup.event_id = first_open
    store.insert([dup])
    q = CountsQuery.model_validate(
        {"events": ["open"], "from": FROM, "to": datetime(2024, 3, 6, 16, tzinfo=UTC)}
    )
    rows = [(r.bucket, r.count, r.unique_users) for r in counts(store, "wsr", q).rows]
    assert rows == [
        ("2024-03-01 00:00:00", 3, 1),  # r3 x3 (one at 16:00 UTC Feb 29 = 00:00 local)
        ("2024-03-02 00:00:00", 3, 3),  # r1 (16:00 UTC Mar 1) r2 r4
        ("2024-03-03 00:00:00", 1, 1),  # r1
        ("2024-03-04 00:00:00", 1, 1),  # vr6 -> r6
        ("2024-03-05 00:00:00", 1, 1),  # r2 (15:00 UTC = 23:00 local)
    ]
    # In UTC the first open of r3 falls on Feb 29 instead.
    utc = counts(store, "wsr", q.model_copy(update={"tz": "UTC"})).rows
    assert (utc[0].bucket, utc[0].count) == ("2024-02-29 00:00:00", 1)
    # Bots only when asked: the bot's open lands on Mar 1 local.
    with_bots = counts(store, "wsr", q.model_copy(update={"include_bots": True})).rows
    assert (with_bots[0].count, with_bots[0].unique_users) == (4, 2)


def test_counts_breakdown_hour_week_month(store: EventStore) -> None:
    load_retention(store)
    q = CountsQuery.model_validate(
        {
            "events": ["click"],
            "interval": "month",
            "breakdown": "channel",
            "from": datetime(2024, 1, 1, tzinfo=UTC),
            "to": TO,
        }
    )
    rows = [(r.bucket, r.value, r.count) for r in counts(store, "wsr", q).rows]
    # Four clicks at 00:00 UTC Feb 1 = 08:00 local Feb 1.
    assert rows == [("2024-02-01 00:00:00", "a", 2), ("2024-02-01 00:00:00", "b", 2)]
    hour = counts(store, "wsr", q.model_copy(update={"interval": "hour", "breakdown": None}))
    assert [(r.bucket, r.count) for r in hour.rows] == [("2024-02-01 08:00:00", 4)]
    week = counts(store, "wsr", q.model_copy(update={"interval": "week"}))
    assert {r.bucket for r in week.rows} == {"2024-01-29 00:00:00"}  # Monday


def test_counts_where_filter(store: EventStore) -> None:
    load_retention(store)
    q = CountsQuery.model_validate(
        {
            "from": datetime(2024, 1, 1, tzinfo=UTC),
            "to": TO,
            "interval": "month",
            "where": {"channel": {"in": ["a"]}, "event": {"neq": "open"}},
        }
    )
    assert [(r.count, r.unique_users) for r in counts(store, "wsr", q).rows] == [(2, 2)]


def test_new_vs_returning(store: EventStore) -> None:
    load_retention(store)
    # Everyone's first event is a click on Feb 1, except r4/r5 (first: a signup on Feb 29
    # local / Mar 2) - so in Mar 1..Mar 2 local, active people who are new that day:
    # Mar 1: r3 (open, signups), r6 signup, r1 signup (23:59), r4? (signup Feb 29 23:00 local
    # is Feb 29) -> active r1 r3 r6; new none (first events Feb 1) -> (0, 3)
    # Mar 2: r1 r2 r3 (2nd signup) r4 -> r4 first event is Feb 29 local -> (0, 4)
    q = NewReturningQuery.model_validate({"from": FROM, "to": TO})
    rows = [
        (r.bucket, r.new_users, r.returning_users) for r in new_vs_returning(store, "wsr", q).rows
    ]
    assert rows == [("2024-03-01 00:00:00", 0, 3), ("2024-03-02 00:00:00", 0, 4)]
    # r5's only event (signup 00:00 local Mar 3) makes it new on Mar 3.
    q3 = NewReturningQuery.model_validate(
        {"from": TO, "to": datetime(2024, 3, 3, 16, tzinfo=UTC), "events": ["signup"]}
    )
    assert [(r.new_users, r.returning_users) for r in new_vs_returning(store, "wsr", q3).rows] == [
        (1, 0)
    ]
