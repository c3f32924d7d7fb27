"""Funnel answers worked out by hand on tests/analytics/fixtures.py, on every backend.

Steps view -> signup -> purchase, window 3600 s, from T to T + 1 day:
- step 1 (a view in range): u1 u2 u3 u4 u5 u6 u9 = 7 (u8's view is before `from`)
- step 2: u1 (600 s) u2 (100) u4 (100, from the second view) u5 (0) u6 (300) u9 (101) = 6
- step 3: u1 (3600, exactly the window) u4 (200) u6 (400) = 3; u2 is 3601 s late
Medians: step 2 of [0, 100, 100, 101, 300, 600] = 100.5; step 3 of [200, 400, 3600] = 400.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from liebian.analytics import funnel
from liebian.analytics.schemas import FunnelQuery
from liebian.events.store import EventStore
from liebian.kit.errors import Invalid

from .fixtures import T, load_funnel


def _q(**kw: Any) -> FunnelQuery:
    base: dict[str, Any] = {
        "steps": [{"event": "view"}, {"event": "signup"}, {"event": "purchase"}],
        "window_seconds": 3600,
        "from": T,
        "to": T + timedelta(days=1),
    }
    base.update(kw)
    return FunnelQuery.model_validate(base)


def _summary(steps: Any) -> list[tuple[int, float, float | None]]:
    return [(s.count, s.conversion_rate, s.median_seconds_to_convert) for s in steps]


def test_funnel_counts_rates_and_medians(store: EventStore) -> None:
    load_funnel(store)
    res = funnel(store, "wsf", _q())
    assert _summary(res.steps) == [(7, 1.0, None), (6, 0.857143, 100.5), (3, 0.428571, 400.0)]
    assert [s.step_conversion_rate for s in res.steps] == [1.0, 0.857143, 0.5]
    assert res.breakdown is None


def test_funnel_step_filter(store: EventStore) -> None:
    load_funnel(store)
    # amount >= 100 keeps u1 (150) and u6 (100), drops u4 (50): step 3 = 2, medians 400/3600.
    steps = [
        {"event": "view"},
        {"event": "signup"},
        {"event": "purchase", "where": {"properties.amount": {"gte": 100}}},
    ]
    res = funnel(store, "wsf", _q(steps=steps))
    assert _summary(res.steps)[2] == (2, 0.285714, 2000.0)
    # Equality on a column: only wechat views start the funnel: u1 u2 u4 (first view).
    steps[0] = {"event": "view", "where": {"platform": "wechat"}}
    res = funnel(store, "wsf", _q(steps=steps))
    # u4's wechat view is at 0 and its signup at 5100: out of the window; u1 and u2 go on.
    assert _summary(res.steps) == [(3, 1.0, None), (2, 0.666667, 350.0), (1, 0.333333, 3600.0)]


def test_funnel_window_edge(store: EventStore) -> None:
    load_funnel(store)
    # With a 3599 s window u1's purchase (at 3600) no longer counts; u4 and u6 still do.
    res = funnel(store, "wsf", _q(window_seconds=3599))
    assert _summary(res.steps)[2] == (2, 0.285714, 300.0)


def test_funnel_breakdown_by_first_touch_channel(store: EventStore) -> None:
    load_funnel(store)
    res = funnel(store, "wsf", _q(breakdown="channel"))
    assert res.breakdown is not None
    got = {b.value: _summary(b.steps) for b in res.breakdown}
    assert got == {
        # u4 first touched moments (before its wx_group click); u6 through its visitor id.
        "moments": [(2, 1.0, None), (2, 1.0, 200.0), (2, 1.0, 300.0)],
        "wx_group": [(2, 1.0, None), (2, 1.0, 350.0), (1, 0.5, 3600.0)],
        None: [(3, 1.0, None), (2, 0.666667, 50.5), (0, 0.0, None)],  # u3 u5 u9
    }
    assert _summary(res.steps)[0] == (7, 1.0, None)


def test_funnel_breakdown_by_column_of_first_step(store: EventStore) -> None:
    load_funnel(store)
    res = funnel(store, "wsf", _q(breakdown="platform"))
    assert res.breakdown is not None
    got = {b.value: [s.count for s in b.steps] for b in res.breakdown}
    # platform of each person's first view: u1 u2 u4 wechat, u3 u9 browser, u6 qq, u5 none.
    assert got == {"wechat": [3, 3, 2], "browser": [2, 1, 0], "qq": [1, 1, 1], None: [1, 1, 0]}


def test_same_event_in_two_steps(store: EventStore) -> None:
    load_funnel(store)
    # As in windowFunnel, one event can satisfy consecutive steps: view -> view reaches 2
    # for all 7 people with a view in range.
    res = funnel(store, "wsf", _q(steps=[{"event": "view"}, {"event": "view"}]))
    assert [s.count for s in res.steps] == [7, 7]


def test_unknown_event_and_field_are_named(store: EventStore) -> None:
    load_funnel(store)
    with pytest.raises(Invalid) as err:
        funnel(store, "wsf", _q(steps=[{"event": "view"}, {"event": "nope"}]))
    assert err.value.details == {"events": ["nope"]}
    with pytest.raises(Invalid) as err:
        steps = [{"event": "view", "where": {"colour": "red"}}, {"event": "signup"}]
        funnel(store, "wsf", _q(steps=steps))
    assert err.value.details == {"fields": ["colour"]}
    with pytest.raises(Invalid):
        steps = [{"event": "view", "where": {"platform": {"like": "x"}}}, {"event": "signup"}]
        funnel(store, "wsf", _q(steps=steps))


def test_filter_values_are_parameters_not_sql(store: EventStore) -> None:
    load_funnel(store)
    steps = [{"event": "view", "where": {"platform": "x' OR 1=1 --"}}, {"event": "signup"}]
    assert [s.count for s in funnel(store, "wsf", _q(steps=steps)).steps] == [0, 0]
