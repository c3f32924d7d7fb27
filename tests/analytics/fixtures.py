"""Fixture events whose query answers are worked out by hand in the tests.

Times are UTC. Asia/Shanghai is UTC+8 all year (no DST), so a local day starts at 16:00 UTC
of the previous UTC day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from liebian.events.store import Alias, EventRow, EventStore

_ids = count()
T = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai


def ev(ws: str, event: str, at: datetime, person: str | None = None, **kw: Any) -> EventRow:
    """An event of ``person`` (user_id) unless visitor_id is given instead."""
    kw.setdefault("user_id", person)
    kw.setdefault("visitor_id", f"vis-{person}" if person else None)
    return EventRow(workspace_id=ws, event_id=f"ev{next(_ids)}", event=event, ts=at, **kw)


def s(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def load_funnel(store: EventStore) -> None:
    ws = "wsf"
    rows = [
        # u1: reaches purchase exactly at the window edge (3600 s after the view).
        ev(ws, "click", s(-100), "u1", channel="wx_group"),
        ev(ws, "view", s(0), "u1", platform="wechat"),
        ev(ws, "signup", s(600), "u1"),
        ev(ws, "purchase", s(3600), "u1", properties={"amount": 150}),
        # u2: purchase one second past the window -> stops at signup.
        ev(ws, "click", s(-50), "u2", channel="wx_group"),
        ev(ws, "view", s(0), "u2", platform="wechat"),
        ev(ws, "signup", s(100), "u2"),
        ev(ws, "purchase", s(3601), "u2", properties={"amount": 500}),
        # u3: signup before the view: out of order -> step 1 only.
        ev(ws, "signup", s(0), "u3"),
        ev(ws, "view", s(10), "u3", platform="browser"),
        ev(ws, "purchase", s(20), "u3", properties={"amount": 100}),
        # u4: repeated view; the chain restarts from the later one.
        ev(ws, "click", s(-10), "u4", channel="moments"),
        ev(ws, "click", s(-5), "u4", channel="wx_group"),
        ev(ws, "view", s(0), "u4", platform="wechat"),
        ev(ws, "view", s(5000), "u4", platform="qq"),
        ev(ws, "signup", s(5100), "u4"),
        ev(ws, "purchase", s(5200), "u4", properties={"amount": 50}),
        # u5: view and signup in the same millisecond count as in order.
        ev(ws, "view", s(50), "u5"),
        ev(ws, "signup", s(50), "u5"),
        # v6: anonymous visitor who signs up as u6 (alias) -> one person.
        ev(ws, "click", s(-200), None, visitor_id="v6", channel="moments"),
        ev(ws, "view", s(0), None, visitor_id="v6", platform="qq"),
        ev(ws, "signup", s(300), "u6", visitor_id="v6"),
        ev(ws, "purchase", s(400), "u6", visitor_id=None, properties={"amount": 100}),
        # u8: the view is before `from` -> not in the funnel.
        ev(ws, "click", s(-20), "u8", channel="wx_group"),
        ev(ws, "view", s(-10), "u8"),
        ev(ws, "signup", s(10), "u8"),
        # u9: view just before `to`, signup after `to` but inside the window.
        ev(ws, "view", s(86399), "u9", platform="browser"),
        ev(ws, "signup", s(86500), "u9"),
        # another workspace's data must never leak in
        ev("other", "view", s(0), "u1"),
        ev("other", "signup", s(1), "u1"),
    ]
    store.insert(rows)
    store.insert(rows[:5])  # a retried batch: same event ids, stored once
    store.add_aliases([Alias(ws, "v6", "u6")])


def load_retention(store: EventStore) -> None:
    ws = "wsr"
    u = datetime  # brevity

    def at(*a: int) -> datetime:
        return u(*a, tzinfo=UTC)

    rows = [
        ev(ws, "click", at(2024, 2, 1), "r1", channel="a"),
        ev(ws, "click", at(2024, 2, 1), "r2", channel="b"),
        ev(ws, "click", at(2024, 2, 1), "r3", channel="a"),
        ev(ws, "click", at(2024, 2, 1), None, visitor_id="vr6", channel="b"),
        # r1: signs up 23:59 local Mar 1; opens 00:00 local Mar 2 (p1) and Mar 3 (p2).
        ev(ws, "signup", at(2024, 3, 1, 15, 59), "r1"),
        ev(ws, "open", at(2024, 3, 1, 16, 0), "r1"),
        ev(ws, "open", at(2024, 3, 3, 10, 0), "r1"),
        # r2: signs up 00:00 local Mar 2; opens Mar 2 01:00 local (p0) and Mar 5 (p3).
        ev(ws, "signup", at(2024, 3, 1, 16, 0), "r2"),
        ev(ws, "open", at(2024, 3, 1, 17, 0), "r2"),
        ev(ws, "open", at(2024, 3, 5, 15, 0), "r2"),
        # r3: signs up 00:30 local Mar 1 (and again later: only the first counts); an open
        # before the signup is ignored; two opens in p0 count once.
        ev(ws, "signup", at(2024, 2, 29, 16, 30), "r3"),
        ev(ws, "signup", at(2024, 3, 2, 3, 0), "r3"),
        ev(ws, "open", at(2024, 2, 29, 16, 0), "r3"),
        ev(ws, "open", at(2024, 3, 1, 1, 0), "r3"),
        ev(ws, "open", at(2024, 3, 1, 2, 0), "r3"),
        # r4: a signup before `from` is outside the range; the first in range is Mar 2.
        ev(ws, "signup", at(2024, 2, 29, 15, 0), "r4"),
        ev(ws, "signup", at(2024, 3, 2, 1, 0), "r4"),
        ev(ws, "open", at(2024, 3, 2, 2, 0), "r4"),
        # r5: signs up exactly at `to` (00:00 local Mar 3): excluded.
        ev(ws, "signup", at(2024, 3, 2, 16, 0), "r5"),
        # r6: opens as an anonymous visitor later aliased to r6: Mar 4 local (p3).
        ev(ws, "signup", at(2024, 3, 1, 2, 0), "r6"),
        ev(ws, "open", at(2024, 3, 4, 2, 0), None, visitor_id="vr6"),
        # a bot open is not counted by default
        ev(ws, "open", at(2024, 3, 1, 3, 0), "bot1", is_bot=True),
    ]
    store.insert(rows)
    store.add_aliases([Alias(ws, "vr6", "r6")])
