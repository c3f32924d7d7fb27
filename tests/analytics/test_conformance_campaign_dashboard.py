"""The campaign dashboard's counts are the same SQL answer on DuckDB and ClickHouse (chdb)."""

from __future__ import annotations

from datetime import UTC, datetime

from liebian.campaigns.dashboard import event_counts
from liebian.events.store import EventStore
from liebian.events.store.base import EventRow

WS, CMP = "ws_1", "cmp_1"
DAY1 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAY2 = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # 01:00 on 03-02 in Shanghai


def _row(n: int, event: str, ts: datetime, *, user: str | None = None, visitor: str | None = None,
         channel: str | None = None, revenue: int | None = None, campaign: str = CMP,
         bot: bool = False) -> EventRow:  # fmt: skip
    return EventRow(
        workspace_id=WS, event_id=f"e{n}", event=event, ts=ts, user_id=user, visitor_id=visitor,
        channel=channel, campaign_id=campaign, revenue=revenue, is_bot=bot,
    )  # fmt: skip


def test_counts_total_by_channel_and_day(store: EventStore) -> None:
    rows = [
        _row(1, "page_view", DAY1, visitor="v1", channel="group"),
        _row(2, "page_view", DAY1, visitor="v1", channel="group"),
        _row(3, "campaign_join", DAY1, user="alice", channel="group"),
        _row(4, "share", DAY1, user="alice", channel="group"),
        _row(5, "share", DAY1, user="alice", channel="group"),
        _row(6, "invite_click", DAY2, visitor="v2", channel="group"),
        _row(7, "invite_click", DAY2, visitor="v3", channel="group"),
        _row(8, "campaign_join", DAY2, user="bob", channel="moments"),
        _row(9, "invite", DAY2, user="alice", channel="group"),
        _row(10, "invite_qualified", DAY2, user="alice", channel="group"),
        _row(11, "group_success", DAY2, user="alice", channel="group", revenue=39_800),
        _row(12, "reward_issued", DAY2, user="alice", revenue=500),
        _row(13, "campaign_join", DAY2, user="x", campaign="cmp_other"),
        _row(14, "page_view", DAY2, visitor="bot", bot=True),
    ]
    store.insert(rows)
    (total,) = event_counts(store, WS, CMP, by=None, tz="Asia/Shanghai")
    assert total[1] == {
        "seen": 1, "participants": 2, "sharers": 1, "shares": 2, "friend_clicks": 2,
        "friend_joins": 1, "friend_conversions": 1, "gmv": 39_800,
    }  # fmt: skip
    channels = dict(event_counts(store, WS, CMP, by="channel", tz="Asia/Shanghai"))
    assert channels["group"]["participants"] == 1 and channels["moments"]["participants"] == 1
    assert channels["group"]["friend_clicks"] == 2 and channels[""]["gmv"] == 0
    days = dict(event_counts(store, WS, CMP, by="day", tz="Asia/Shanghai"))
    assert sorted(days) == ["2026-03-01", "2026-03-02"]
    assert days["2026-03-01"]["shares"] == 2 and days["2026-03-02"]["friend_joins"] == 1
