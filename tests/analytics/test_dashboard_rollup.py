"""The campaign rollup kept at load gives the dashboard the same counts as the GROUP BY over
the events, on DuckDB and ClickHouse (chdb): random batches with repeats across batches, late
events, bots, people without ids, several campaigns and workspaces, a workspace in another
time zone, and then a contacts merge and an erasure (which change who is the same person)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from liebian.campaigns.dashboard import counts_from_events, event_counts
from liebian.events.store import EventStore
from liebian.events.store.base import EventRow

EVENTS = ("page_view", "campaign_join", "share", "invite_click", "invite", "invite_qualified",
          "group_success", "reward_issued", "order")  # fmt: skip
START = datetime(2026, 3, 1, tzinfo=UTC)


def _random_rows(rng: random.Random, n: int, first_id: int) -> list[EventRow]:
    rows = []
    for _ in range(n):
        ev = rng.choice(EVENTS)
        user = rng.choice([None, None, "", *(f"u{k}" for k in range(8))])
        visitor = rng.choice([None, *(f"v{k}" for k in range(10))])
        rows.append(
            EventRow(
                workspace_id=rng.choice(["ws_a", "ws_a", "ws_b"]),
                # repeats: ids drawn from a range that overlaps earlier batches
                event_id=f"e{rng.randrange(max(0, first_id - 20), first_id + n)}",
                event=ev,
                ts=START + timedelta(hours=rng.randrange(0, 24 * 5), minutes=rng.randrange(60)),
                user_id=user,
                visitor_id=visitor,
                channel=rng.choice([None, "", "group", "moments"]),
                campaign_id=rng.choice(["cmp_1", "cmp_1", "cmp_2", None]),
                revenue=rng.choice([None, 100, 2_500])
                if ev in ("order", "reward_issued")
                else None,
                is_bot=rng.random() < 0.1,
            )
        )
    return rows


def _check(store: EventStore, zones: dict[str, str], workspaces: tuple[str, ...]) -> None:
    for ws in workspaces:
        tz = zones[ws]
        for by in (None, "channel", "day"):
            for cid in ("cmp_1", "cmp_2"):
                got = event_counts(store, ws, cid, by=by, tz=tz)
                want = counts_from_events(store, ws, cid, by=by, tz=tz)
                assert got == want, (ws, cid, by)
        got = event_counts(store, ws, ["cmp_1", "cmp_2", "cmp_none"], by="campaign", tz=tz)
        want = counts_from_events(store, ws, ["cmp_1", "cmp_2", "cmp_none"], by="campaign", tz=tz)
        assert got == want and got


def test_rollup_matches_the_events(store: EventStore) -> None:
    rng = random.Random(12)
    store.set_rollup_zone("ws_b", "America/New_York")
    zones = {"ws_a": "Asia/Shanghai", "ws_b": "America/New_York"}
    for b in range(4):
        store.insert(_random_rows(rng, 60, b * 60))
    _check(store, zones, ("ws_a", "ws_b"))
    (total,) = event_counts(store, "ws_a", "cmp_1", by=None, tz="UTC")
    assert total[1]["seen"] and total[1]["participants"] and total[1]["gmv"]
    # Another zone than the rollup's: computed from the events, same answer.
    assert event_counts(store, "ws_a", "cmp_1", by="day", tz="UTC") == counts_from_events(
        store, "ws_a", "cmp_1", by="day", tz="UTC"
    )
    # Who is the same person changes: u1 becomes u2, and u3 is erased.
    before = event_counts(store, "ws_a", "cmp_1", by=None, tz="UTC")
    store.move_person("ws_a", "u1", "u2")
    store.erase_person("ws_a", ["u3"], ["v3"], "erased_1")
    _check(store, zones, ("ws_a",))  # ws_b's events did not change
    assert event_counts(store, "ws_a", "cmp_1", by=None, tz="UTC") != before
    # The workspace's zone changes: its days are re-keyed.
    store.set_rollup_zone("ws_a", "UTC")
    zones["ws_a"] = "UTC"
    assert store.rollup_zone("ws_a") == "UTC"
    store.insert(_random_rows(rng, 40, 300))
    _check(store, zones, ("ws_a",))
    # A rebuild from the events gives the same rollup as the one kept batch by batch.
    kept = event_counts(store, "ws_a", "cmp_1", by="day", tz="UTC")
    store.rebuild_rollup()
    assert event_counts(store, "ws_a", "cmp_1", by="day", tz="UTC") == kept
