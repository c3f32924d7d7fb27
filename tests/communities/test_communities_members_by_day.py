"""成员 by day: each key's members at the end of each local day of the range — the joins − leaves
of its events before the range plus the running joins − leaves inside it — on DuckDB (kept day
counts and the events) and ClickHouse (chdb), and through the API on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from liebian.communities.metrics import group_metrics
from liebian.events.store import EventRow, EventStore

SH = ZoneInfo("Asia/Shanghai")
WS = "ws_members_day"


def _at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SH)


# (local day of November, minute, event, person, group); g1 is tier t1, g2 tier t2.
HISTORY = [
    (1, 0, "group_joined", "u1", "g1"), (1, 1, "group_joined", "u2", "g1"),
    (2, 0, "group_joined", "u3", "g2"), (3, 0, "group_left", "u2", "g1"),
    (4, 0, "group_joined", "u4", "g1"), (4, 5, "community_view", "u9", None),
    (5, 0, "group_left", "u1", "g1"), (5, 1, "group_joined", "u5", "g2"),
    (6, 0, "group_message", "u3", "g2"),
    (7, 0, "group_left", "u3", "g2"), (7, 1, "group_joined", "u6", "g2"),
    (7, 2, "group_left", "u6", "g2"),
    (8, 0, "group_joined", "u7", "g1"),  # after every range here: never counted
]  # fmt: skip
TIER = {"g1": "t1", "g2": "t2"}


def _rows(ws: str, community: str) -> list[EventRow]:
    out = []
    for n, (day, minute, event, who, group) in enumerate(HISTORY):
        props: dict[str, Any] = {"community_id": community}
        if group:
            props |= {"group_id": group, "tier": TIER[group]}
        out.append(EventRow(ws, f"e{n}", event, _at(day, 10, minute), user_id=who,
                            properties=props))  # fmt: skip
    # Another community's join the same day: not this one's member.
    out.append(EventRow(ws, "eo", "group_joined", _at(1), user_id="u8",
                        properties={"community_id": "cmy_other", "group_id": "g1"}))  # fmt: skip
    return out


# A range of whole local days, 11-04 .. 11-07: members at its start are g1 = 1 (u1; u2 left),
# g2 = 1 (u3). (day, key) -> (joins, leaves, members at the end of the day).
WHOLE = {
    "group": {
        ("2026-11-04", ""): (0, 0, 0),  # the entry page view (no group)
        ("2026-11-04", "g1"): (1, 0, 2), ("2026-11-04", "g2"): (0, 0, 1),
        ("2026-11-05", "g1"): (0, 1, 1), ("2026-11-05", "g2"): (1, 0, 2),
        ("2026-11-06", "g1"): (0, 0, 1), ("2026-11-06", "g2"): (0, 0, 2),
        ("2026-11-07", "g1"): (0, 0, 1), ("2026-11-07", "g2"): (1, 2, 1),
    },
    "community": {
        ("2026-11-04", ""): (1, 0, 3), ("2026-11-05", ""): (1, 1, 3),
        ("2026-11-06", ""): (0, 0, 3), ("2026-11-07", ""): (1, 2, 2),
    },
}  # fmt: skip
WHOLE["tier"] = {
    (d, TIER[k]): v for (d, k), v in WHOLE["group"].items() if k
}  # no '' row by tier: the view carries no tier in these events, its key is ''
WHOLE["tier"][("2026-11-04", "")] = (0, 0, 0)


def _table(days: list[Any]) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {(d.day, d.key): (d.joins, d.leaves, d.members) for d in days}


def test_members_by_day_over_whole_and_partial_days(store: EventStore) -> None:
    cmy = "cmy_01JDMEMBERSBYDAYAAAAAAAAA"
    store.insert(_rows(WS, cmy))
    for by in ("group", "tier", "community"):
        out = group_metrics(store, WS, cmy, _at(4, 0), _at(8, 0), by)  # type: ignore[arg-type]
        assert _table(out.days) == WHOLE[by], by
    # The start-of-range members are in: without them g1 would end 11-04 at 1 (its join),
    # g2 would show no row on 11-04 and end the range at 0.
    days = _table(group_metrics(store, WS, cmy, _at(4, 0), _at(8, 0), "group").days)
    assert days[("2026-11-04", "g1")][2] != 1 and days[("2026-11-07", "g2")][2] == 1
    # Partial first and last days (counted from the events): from 11-04 12:00 (u4's join at
    # 10:00 is before the range: g1 starts at 2) to 11-07 10:01 (u6's leave at 10:02 is after).
    out = group_metrics(store, WS, cmy, _at(4, 12), _at(7, 10, 2), "group")
    assert _table(out.days) == {
        ("2026-11-04", "g1"): (0, 0, 2), ("2026-11-04", "g2"): (0, 0, 1),
        ("2026-11-05", "g1"): (0, 1, 1), ("2026-11-05", "g2"): (1, 0, 2),
        ("2026-11-06", "g1"): (0, 0, 1), ("2026-11-06", "g2"): (0, 0, 2),
        ("2026-11-07", "g1"): (0, 0, 1), ("2026-11-07", "g2"): (1, 1, 2),
    }  # fmt: skip
    # Members by day agree with the range's own joins and leaves (the same events): the last
    # day's members minus the start's are the summary's joins − leaves, per key.
    summary = {r.key: r for r in out.summary}
    assert {k: summary[k].joins - summary[k].leaves for k in ("g1", "g2")} == {"g1": -1, "g2": 1}
    # Another zone: the days are UTC days (10:00 Shanghai is 02:00 UTC, the same dates).
    utc = group_metrics(store, WS, cmy, _at(4, 8), _at(8, 8), "community", "UTC")
    assert [(d.day, d.members) for d in utc.days] == [
        ("2026-11-04", 3),
        ("2026-11-05", 3),
        ("2026-11-06", 3),
        ("2026-11-07", 2),
    ]


@pytest.fixture
def community(client: Any, owner: dict[str, str], runtime: Any) -> tuple[str, str]:
    from liebian.communities.models import Community
    from liebian.kit.db import session_scope

    r = client.post("/api/v1/communities", json={"name": "成员群"}, headers=owner)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    with session_scope(runtime.sessions) as session:
        ws = session.get(Community, cid).workspace_id
    return cid, ws


def test_members_by_day_through_the_api(
    client: Any, owner: dict[str, str], runtime: Any, community: tuple[str, str]
) -> None:
    cid, ws = community
    runtime.event_store.insert(_rows(ws, cid))
    window = {"from": _at(4, 0).isoformat(), "to": _at(8, 0).isoformat()}
    for by in ("group", "tier", "community"):
        r = client.get(
            f"/api/v1/communities/{cid}/metrics", params={**window, "by": by}, headers=owner
        )
        assert r.status_code == 200, r.text
        days = r.json()["days"]
        assert {(d["day"], d["key"]): (d["joins"], d["leaves"], d["members"]) for d in days} == (
            WHOLE[by]
        ), by
    # The declared response model carries it.
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "members" in schema["DayRow"]["properties"]
