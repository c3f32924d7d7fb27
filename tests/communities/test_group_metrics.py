"""Group metrics from the event store, the same answers on DuckDB and ClickHouse (chdb)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from liebian.communities.metrics import group_metrics
from liebian.events.store import EventRow, EventStore

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
WS, CMY = "ws_metrics", "cmy_01JDAAAAAAAAAAAAAAAAAAAAAA"


def _ev(n: int, event: str, user: str, day: int, group: str | None = None, tier: str | None = None,
        revenue: int | None = None, community: str = CMY) -> EventRow:  # fmt: skip
    props = {"community_id": community, "group_id": group, "tier": tier}
    return EventRow(
        WS, f"e{n}", event, T0 + timedelta(days=day, minutes=n), user_id=user, revenue=revenue,
        currency="CNY" if revenue else None,
        properties={k: v for k, v in props.items() if v} if event != "purchase" else None,
    )  # fmt: skip


def test_joins_leaves_rates_activity_and_gmv_by_group_and_tier(store: EventStore) -> None:
    rows = [
        _ev(1, "community_view", "u1", 0), _ev(2, "community_view", "u2", 0),
        _ev(3, "community_view", "u3", 0), _ev(4, "community_view", "u4", 1),
        _ev(5, "group_joined", "u1", 0, "g1", "t03"), _ev(6, "group_joined", "u2", 0, "g1", "t03"),
        _ev(7, "group_joined", "u3", 1, "g2", "t38"),
        _ev(8, "group_left", "u2", 2, "g1", "t03"),
        _ev(9, "group_message", "u1", 1, "g1", "t03"), _ev(10, "group_message", "u1", 1, "g1", "t03"),
        _ev(11, "group_message", "u3", 25, "g2", "t38"),
        _ev(12, "group_violation", "u1", 1, "g1", "t03"),
        _ev(13, "purchase", "u1", 3, revenue=9900), _ev(14, "purchase", "u3", 0, revenue=500),
        _ev(15, "group_joined", "u9", 0, "gX", None, community="cmy_other"),
    ]  # fmt: skip
    store.insert(rows)
    end = T0 + timedelta(days=30)
    out = group_metrics(store, WS, CMY, T0 - timedelta(days=1), end, "group")
    by_day = {(d.day, d.key): d for d in out.days}
    assert by_day[("2026-11-01", "")].views == 3 and by_day[("2026-11-01", "g1")].joins == 2
    assert (
        by_day[("2026-11-02", "g1")].messages == 2
        and by_day[("2026-11-02", "g1")].active_members == 1
    )
    assert by_day[("2026-11-03", "g1")].leaves == 1
    s = {r.key: r for r in out.summary}
    assert set(s) == {"g1", "g2"}
    g1, g2 = s["g1"], s["g2"]
    assert (g1.joins, g1.leaves, g1.leave_rate, g1.violations) == (2, 1, 0.5, 1)
    assert g1.join_rate == 0.5 and g2.join_rate == 0.25  # 2 and 1 of 4 viewers
    # The last 7 days of the range hold only u3's message in g2.
    assert (g1.active_30d, g1.active_7d, g2.active_7d, g2.messages_7d) == (1, 0, 1, 1)
    # u1 bought after joining (counted); u3 bought before joining (not).
    assert (g1.conversions, g1.gmv, g2.conversions, g2.gmv) == (1, 9900, 0, 0)
    tiers = {
        r.key: r for r in group_metrics(store, WS, CMY, T0 - timedelta(days=1), end, "tier").summary
    }
    assert tiers["t03"].joins == 2 and tiers["t38"].joins == 1
    whole = group_metrics(store, WS, CMY, T0 - timedelta(days=1), end, "community").summary
    assert [(r.key, r.viewers, r.joins, r.leaves, r.join_rate) for r in whole] == [
        ("", 4, 3, 1, 0.75)
    ]


def test_the_analytics_queries_work_on_community_events(store: EventStore) -> None:
    """Group joins, messages and leaves are events, so the existing funnel, retention and
    counts answer community questions — e.g. retention of people who joined a 0–3 group."""
    from liebian.analytics.counts import counts
    from liebian.analytics.funnel import funnel
    from liebian.analytics.retention import retention
    from liebian.analytics.schemas import CountsQuery, FunnelQuery, RetentionQuery

    store.insert([
        _ev(1, "community_view", "u1", 0), _ev(2, "community_view", "u2", 0),
        _ev(3, "community_view", "u3", 0),
        _ev(4, "group_joined", "u1", 0, "g1", "t03"), _ev(5, "group_joined", "u2", 0, "g1", "t03"),
        _ev(6, "group_joined", "u3", 0, "g2", "t38"),
        _ev(7, "group_message", "u1", 1, "g1", "t03"), _ev(8, "group_message", "u3", 1, "g2", "t38"),
        _ev(9, "group_message", "u2", 3, "g1", "t03"),
        _ev(10, "purchase", "u1", 2, revenue=9900),
    ])  # fmt: skip
    rng = {"from": T0 - timedelta(days=1), "to": T0 + timedelta(days=7)}
    ret = retention(store, WS, RetentionQuery.model_validate({
        **rng, "start_event": "group_joined", "return_event": "group_message", "periods": 3,
        "start_where": {"properties.tier": "t03"}}))  # fmt: skip
    assert [(c.start, c.size, c.retained) for c in ret.cohorts] == [("2026-11-01", 2, [0, 1, 0, 1])]
    fun = funnel(store, WS, FunnelQuery.model_validate({
        **rng, "window_seconds": 7 * 86400, "steps": [
            {"event": "community_view"},
            {"event": "group_joined", "where": {"properties.tier": "t03"}},
            {"event": "purchase"}]}))  # fmt: skip
    assert [s.count for s in fun.steps] == [3, 2, 1]
    by_tier = counts(store, WS, CountsQuery.model_validate({
        **rng, "events": ["group_joined"], "interval": "week", "breakdown": "properties.tier"}))  # fmt: skip
    assert sorted((r.value, r.count) for r in by_tier.rows) == [("t03", 2), ("t38", 1)]
