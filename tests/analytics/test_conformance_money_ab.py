"""Attribution, LTV, CAC/ROI, A/B, named metrics, link stats and export, by hand.

Attribution fixture (day 0 = 2024-05-01 04:00 UTC = 12:00 Shanghai), lookback 7 days:
- p1: click A d0, click B d2, bot click Z d2.5, purchase d3 = 1000
- p2: click A d0, purchase d10 = 500 (click outside the lookback -> direct)
- p3: click B d1, click B d1+1h, click C d2, purchase d3 = 900
- p4: purchase d3 = 300, no click -> direct
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from liebian.analytics import ab_readout, attribution, cac, export, link_stats, ltv, metrics
from liebian.analytics.schemas import (
    AbQuery,
    AttributionQuery,
    CacQuery,
    LtvQuery,
    MetricsQuery,
)
from liebian.events.store import EventStore

from .fixtures import ev

D0 = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
RANGE = {"from": D0, "to": D0 + timedelta(days=20)}


def d(days: float) -> datetime:
    return D0 + timedelta(days=days)


def _load(store: EventStore) -> None:
    ws = "wsa"
    store.insert(
        [
            ev(ws, "click", d(0), "p1", channel="A"),
            ev(ws, "click", d(2), "p1", channel="B"),
            ev(ws, "click", d(2.5), "p1", channel="Z", is_bot=True),
            ev(ws, "purchase", d(3), "p1", revenue=1000, currency="CNY"),
            ev(ws, "click", d(0), "p2", channel="A"),
            ev(ws, "purchase", d(10), "p2", revenue=500, currency="CNY"),
            ev(ws, "click", d(1), "p3", channel="B"),
            ev(ws, "click", d(1 + 1 / 24), "p3", channel="B"),
            ev(ws, "click", d(2), "p3", channel="C"),
            ev(ws, "purchase", d(3), "p3", revenue=900, currency="CNY"),
            ev(ws, "purchase", d(3), "p4", revenue=300, currency="CNY"),
        ]
    )


def _attr(store: EventStore, model: str) -> list[tuple[str | None, float, int]]:
    q = AttributionQuery.model_validate({**RANGE, "model": model, "lookback_days": 7})
    return [(r.value, r.conversions, r.revenue) for r in attribution(store, "wsa", q).rows]


def test_attribution_models(store: EventStore) -> None:
    _load(store)
    assert _attr(store, "first_touch") == [(None, 2.0, 800), ("A", 1.0, 1000), ("B", 1.0, 900)]
    assert _attr(store, "last_touch") == [(None, 2.0, 800), ("B", 1.0, 1000), ("C", 1.0, 900)]
    # linear: p1 splits A/B half each (500/500); p3 B 2/3 (600), C 1/3 (300).
    assert _attr(store, "linear") == [
        (None, 2.0, 800),
        ("B", 1.166667, 1100),
        ("A", 0.5, 500),
        ("C", 0.333333, 300),
    ]


def test_ltv_by_channel_and_cohort(store: EventStore) -> None:
    _load(store)
    q = LtvQuery.model_validate(RANGE)
    rows = [(r.cohort, r.channel, r.users, r.revenue, r.ltv) for r in ltv(store, "wsa", q).rows]
    assert rows == [
        ("2024-05-01", None, 1, 300, 300.0),  # p4
        ("2024-05-01", "A", 2, 1500, 750.0),  # p1 p2
        ("2024-05-01", "B", 1, 900, 900.0),  # p3
    ]
    # Within 5 days of the first event p2's purchase (day 10) no longer counts.
    q5 = q.model_copy(update={"horizon_days": 5})
    a = next(r for r in ltv(store, "wsa", q5).rows if r.channel == "A")
    assert (a.revenue, a.ltv) == (1000, 500.0)


def test_cac_and_roi(store: EventStore) -> None:
    _load(store)
    spend = [
        {"channel": "A", "amount": 1000},
        {"channel": "B", "amount": 3000},
        {"channel": "C", "amount": 500},
    ]
    q = CacQuery.model_validate({**RANGE, "spend": spend})
    rows = [
        (r.channel, r.spend, r.new_users, r.revenue, r.cac, r.roi)
        for r in cac(store, "wsa", q).rows
    ]
    assert rows == [
        (None, 0, 1, 300, None, None),
        ("A", 1000, 2, 1500, 500.0, 0.5),
        ("B", 3000, 1, 900, 3000.0, -0.7),
        ("C", 500, 0, 0, None, -1.0),  # C touched p3 but acquired nobody (first touch B)
    ]


def test_ab_readout(store: EventStore) -> None:
    ws = "wsb"
    rows = []
    for arm, n, conv in (("A", 200, 40), ("B", 200, 60)):
        for i in range(n):
            who = f"{arm}{i}"
            rows.append(ev(ws, "click", d(0), who, properties={"variant": arm}))
            if i < conv:
                rows.append(ev(ws, "signup", d(1), who))
    rows.append(ev(ws, "signup", d(-1), "A199"))  # converted before exposure: not counted
    store.insert(rows)
    q = AbQuery.model_validate(
        {**RANGE, "exposure_event": "click", "conversion_event": "signup", "control": "A"}
    )
    res = ab_readout(store, ws, q)
    a, b = res.arms
    assert (a.arm, a.exposed, a.converted, a.rate) == ("A", 200, 40, 0.2)
    # pooled p = 100/400; z = 0.1 / sqrt(.25 * .75 * (2/200)) = 2.309401, p = 0.020921;
    # CI = 0.1 -/+ 1.959964 * sqrt(.2*.8/200 + .3*.7/200) = [0.015699, 0.184301]
    assert (b.converted, b.diff_vs_control, b.z, b.p_value) == (60, 0.1, 2.309401, 0.020921)
    assert (b.ci_low, b.ci_high, b.significant) == (0.015699, 0.184301, True)
    assert res.sufficient_sample
    assert any("planned sample" in w for w in res.warnings)  # peeking warning
    small = ab_readout(store, ws, q.model_copy(update={"min_sample": 500, "planned_sample": 200}))
    assert not small.sufficient_sample and small.arms[1].significant is False


def test_named_metrics(store: EventStore) -> None:
    ws = "wsm"
    store.insert(
        [
            ev(ws, "click", d(0), "m1"),
            ev(ws, "join_group", d(0.1), "m1"),
            ev(ws, "signup", d(0.2), "m1"),
            ev(ws, "open", d(1), "m1"),  # next local day
            ev(ws, "share", d(1), "m1"),
            ev(ws, "purchase", d(1), "m1", revenue=3000),
            ev(ws, "purchase", d(2), "m1", revenue=1000),
            ev(ws, "click", d(0), "m2"),
            ev(ws, "signup", d(0.2), "m2"),
            ev(ws, "open", d(7), "m2"),
            ev(ws, "invite", d(7), "m2"),
            ev(ws, "page_view", d(0), "m3"),
            ev(ws, "purchase", d(0), "m3", revenue=2000),
            ev(ws, "click", d(0), "bot", is_bot=True),
        ]
    )
    r = metrics(store, ws, MetricsQuery.model_validate(RANGE))
    # 3 active people (the bot excluded); 1 of 2 clickers joined; signups m1 m2: m1 back on
    # day 1, m2 on day 7; m2 invited, m1 shared; buyers m1 m3 of visitors m1 m2 m3;
    # 3 orders, GMV 6000, AOV 2000, ARPU 2000.
    assert (r.active_users, r.group_join_rate, r.day1_retention, r.day7_retention) == (
        3,
        0.5,
        0.5,
        0.5,
    )
    assert (r.invite_rate, r.share_rate, r.conversion_rate) == (0.333333, 0.333333, 0.666667)
    assert (r.orders, r.gmv, r.aov, r.arpu) == (3, 6000, 2000.0, 2000.0)


def test_link_stats(store: EventStore) -> None:
    ws = "wsl"
    late = datetime(2024, 5, 1, 17, 0, tzinfo=UTC)  # 01:00 May 2 in Shanghai
    store.insert(
        [
            ev(ws, "click", d(0), None, visitor_id="a", link_id="L1", platform="wechat"),
            ev(ws, "click", late, None, visitor_id="a", link_id="L1", platform="wechat"),
            ev(ws, "click", d(0), None, visitor_id="b", link_id="L1", platform="qq", is_qr=True),
            ev(ws, "click", d(0), None, visitor_id="c", link_id="L1", platform="bot", is_bot=True),
            ev(ws, "click", d(0), None, visitor_id="z", link_id="L2", platform="wechat"),
            ev("other", "click", d(0), None, visitor_id="q", link_id="L1", platform="wechat"),
        ]
    )
    s = link_stats(store, ws, "L1")
    assert (s.clicks, s.bot_clicks, s.qr_scans, s.unique_visitors) == (3, 1, 1, 2)
    assert s.by_platform == {"qq": 1, "wechat": 2}  # humans only: adds up to clicks
    assert sum(s.by_platform.values()) == s.clicks
    assert s.by_day == {"2024-05-01": 2, "2024-05-02": 1}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(store: EventStore, tmp_path: Path, fmt: Any) -> None:
    _load(store)
    res = ltv(store, "wsa", LtvQuery.model_validate(RANGE))
    out = export(res, tmp_path / f"ltv.{fmt}", fmt)
    reader = "read_csv_auto" if fmt == "csv" else "read_parquet"
    got = duckdb.sql(
        f"SELECT channel, users, revenue FROM {reader}('{out}') ORDER BY revenue"
    ).fetchall()
    assert got == [(None, 1, 300), ("B", 1, 900), ("A", 2, 1500)]


def test_last_touch_matches_click_id(store: EventStore) -> None:
    # q1 clicked D on another device (visitor vq1, never aliased), then E as q1; the
    # purchase carries D's click id -> last touch credits D, not q1's later E click.
    # q2's purchase carries an unknown click id -> its own last touch (E).
    # q3's click id points at a click 8 days earlier: outside the 7-day lookback -> direct.
    ws = "wsc"
    store.insert(
        [
            ev(ws, "click", d(1), None, visitor_id="vq1", channel="D", click_id="ck1"),
            ev(ws, "click", d(2), "q1", channel="E", click_id="ck2"),
            ev(ws, "purchase", d(3), "q1", revenue=700, click_id="ck1"),
            ev(ws, "click", d(2), "q2", channel="E", click_id="ck3"),
            ev(ws, "purchase", d(3), "q2", revenue=200, click_id="nope"),
            ev(ws, "click", d(0), None, visitor_id="vq3", channel="D", click_id="ck4"),
            ev(ws, "purchase", d(8.5), "q3", revenue=100, click_id="ck4"),
        ]
    )
    q = AttributionQuery.model_validate({**RANGE, "model": "last_touch", "lookback_days": 7})
    got = [(r.value, r.conversions, r.revenue) for r in attribution(store, ws, q).rows]
    assert got == [(None, 1.0, 100), ("D", 1.0, 700), ("E", 1.0, 200)]
    # first touch ignores click ids: q1 has only its own E click.
    q = q.model_copy(update={"model": "first_touch"})
    got = [(r.value, r.conversions, r.revenue) for r in attribution(store, ws, q).rows]
    assert got == [("E", 2.0, 900), (None, 1.0, 100)]
