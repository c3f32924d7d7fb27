"""The condition language answers the same members on DuckDB and ClickHouse (chdb), on SQLite
and PostgreSQL, and both equal a brute-force Python oracle over the same small population."""

from __future__ import annotations

import random

import pytest

from liebian.app.runtime import Runtime
from liebian.events.store import EventStore
from liebian.kit.db import session_scope
from liebian.segments import conditions as c
from liebian.segments.evaluation import evaluate
from liebian.segments.service import check_condition

from .fixtures import COMMUNITY, GROUPS, NOW, build_world, load, oracle, random_condition

HAND_WRITTEN = [
    # the speed benchmark's shape: a tag, bought ≥ 2 times in 30 days, no visit in 14 days
    {
        "type": "and",
        "conditions": [
            {"type": "tags", "match": "any", "tags": ["tag_01AAAAAAAAAAAAAAAAAAAAAAAA"]},
            {
                "type": "event",
                "event": "purchase",
                "window": {"last_days": 30},
                "measure": "count",
                "op": "gte",
                "value": 2,
            },
            {"type": "event", "event": "visit", "window": {"last_days": 14}, "did": False},
        ],
    },
    {"type": "event", "event": "visit", "did": False},
    {"type": "not", "condition": {"type": "event", "event": "click", "did": True}},
    {
        "type": "or",
        "conditions": [
            {
                "type": "event",
                "event": "purchase",
                "measure": "sum_revenue",
                "op": "lte",
                "value": 1990,
            },
            {"type": "attribute", "attribute": "orders_count", "op": "gte", "value": 3},
        ],
    },
    {"type": "event", "event": "purchase", "measure": "avg_revenue", "op": "gte", "value": 1000},
    {"type": "event_time", "event": "visit", "which": "last", "op": "within_last_days", "value": 5},
    {"type": "campaign", "status": "invited", "min": 2},
    {"type": "segment", "segment_id": "seg_01REFERENCEDAAAAAAAAAAAAA"},
    # communities: state in the OLTP database …
    {"type": "community", "community_id": COMMUNITY, "status": "joined", "within_last_days": 10},
    {"type": "not", "condition": {"type": "community"}},
    {"type": "community", "community_id": COMMUNITY, "tier": "b", "status": "any"},
    {
        "type": "community",
        "community_id": COMMUNITY,
        "group_id": sorted(GROUPS)[0],
        "status": "left",
    },
    # … and the joins as events (group_joined) in the event engine, mixed with state
    {
        "type": "and",
        "conditions": [
            {"type": "community", "status": "left"},
            {
                "type": "event",
                "event": "group_joined",
                "where": {"properties.community_id": COMMUNITY, "properties.tier": "a"},
                "window": {"last_days": 20},
                "did": True,
            },
        ],
    },
    {
        "type": "or",
        "conditions": [
            {"type": "community", "community_id": COMMUNITY, "status": "routed"},
            {"type": "event", "event": "group_joined", "did": False},
        ],
    },
]


def _conditions() -> list[dict]:
    rng = random.Random(20261202)
    return HAND_WRITTEN + [random_condition(rng) for _ in range(60)]


def test_engines_and_databases_match_the_oracle(
    runtime: Runtime, store: EventStore, db_url: str
) -> None:
    if db_url.startswith("postgresql") and store.dialect == "clickhouse":
        pytest.skip("PostgreSQL runs with DuckDB; ClickHouse runs with SQLite (time budget)")
    world = build_world("ws_conf")
    with session_scope(runtime.sessions) as session:
        from liebian.workspaces.models import Workspace

        session.add(Workspace(id="ws_conf", name="conformance"))
        session.flush()
        load(world, session, store)
    mismatches = []
    sizes = set()
    with session_scope(runtime.sessions) as session:
        for i, data in enumerate(_conditions()):
            node = check_condition(session, "ws_conf", data)
            got = evaluate(session, store, "ws_conf", node, now=NOW)
            want = oracle(world, node)
            sizes.add(len(want))
            if got != want:
                mismatches.append((i, data, sorted(got ^ want)))
            # the incremental path (restricted to some contacts) agrees with the full one
            if i % 7 == 0:
                some = [p.id for p in world.people[::3]]
                part = evaluate(session, store, "ws_conf", node, some, now=NOW)
                assert part == want & set(some), data
    assert not mismatches, mismatches[:3]
    # the generated conditions are not trivially empty or full
    assert len(sizes) > 5


def test_validate_names_the_path() -> None:
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate(
            {
                "type": "and",
                "conditions": [
                    {"type": "attribute", "attribute": "orders_count", "op": "like", "value": 1}
                ],
            }
        )
    assert err.value.details == {"path": "$.conditions[0].op"}
    assert err.value.status == 422
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate({"type": "attribute", "attribute": "shoe_size", "op": "eq", "value": 1})
    assert err.value.code == "unknown_attribute"
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate({"type": "teleport"})
    assert err.value.details == {"path": "$.type"}
    deep: dict = {"type": "event", "event": "x", "did": True}
    for _ in range(10):
        deep = {"type": "not", "condition": deep}
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate(deep)
    assert err.value.code == "condition_too_deep"
    assert err.value.details["path"].count(".condition") == 10
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate({"type": "event", "event": "buy", "where": {"bogus": 1}, "did": True})
    assert err.value.details == {"path": "$.where"}
    with pytest.raises(c.ConditionInvalid) as err:
        c.validate({"type": "event", "event": "buy", "window": {"last_days": 0}, "did": True})
    assert err.value.details == {"path": "$.window.last_days"}
