"""A batch's spool lines come from one orjson dump of the whole list, split at the items'
boundaries: they must be the lines one dump per event makes, and store the same values on
every backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from liebian.events import service
from liebian.events.schemas import EVENT_BATCH, MAX_PROPERTIES_BYTES
from liebian.events.spool import Spool
from liebian.events.store import EventStore
from liebian.events.store.base import COLUMN_NAMES

NOW = datetime(2024, 3, 2, 8, 30, 15, 250000, tzinfo=UTC)

# What clients send, lax mode included: numbers and strings pydantic coerces, padding it
# strips, escapes and non-ASCII text, offsets, defaults the server fills in.
LAX_EVENTS: list[dict[str, Any]] = [
    {
        "event": " signup ",
        "event_id": " e-1 ",
        "user_id": " u1 ",
        "ts": 1709294400,
        "revenue": "1999",
        "properties": {"plan": "试听", "price": 1e5, "nested": {"a": [1, 2.5, None]}},
    },
    {
        "event": "page_view",
        "event_id": "e-2",
        "visitor_id": 'v\u4e2d\\"x',
        "ts": "2024-03-01T20:00:00+08:00",
        "currency": "USD",
        "channel": "wx_group",
    },
    {
        "event": "purchase",
        "event_id": "e-3",
        "user_id": "u1",
        "revenue": 500,
        "ts": "2024-03-01T12:00:00.123456Z",
        "link_id": "lnk_1",
        "campaign_id": "cmp_1",
        "click_id": "clk_1",
    },
    {"event": "page_view", "event_id": "e-4", "visitor_id": "v2", "properties": {}},
    {"event": "page_view", "visitor_id": "v3", "ts": "2023-12-31T23:59:59-05:00"},
]


def _ingest(spool: Spool, workspace_id: str, body: Any) -> Any:
    return service.ingest(
        workspace_id=workspace_id,
        raw=json.dumps(body, ensure_ascii=True).encode(),
        spool=spool,
        now=NOW,
    )


def _rows(store: EventStore, workspace_id: str) -> list[tuple[Any, ...]]:
    """Every stored column but the workspace, generated ids masked, in a stable order."""
    ws = "$ws" if store.dialect == "duckdb" else "{ws:String}"
    columns = [c for c in COLUMN_NAMES if c != "workspace_id"]
    rows = store.query(
        f"SELECT {', '.join(columns)} FROM {store.events_table} WHERE workspace_id = {ws}",
        {"ws": workspace_id},
    )
    id_at = columns.index("event_id")
    masked = [
        tuple(
            "(generated)" if i == id_at and str(v).startswith(("evt_", "evh_")) else v
            for i, v in enumerate(r)
        )
        for r in rows
    ]
    return sorted(masked, key=repr)


def _column(rows: list[tuple[Any, ...]], name: str) -> list[Any]:
    at = [c for c in COLUMN_NAMES if c != "workspace_id"].index(name)
    return [r[at] for r in rows]


def test_a_batch_stores_what_single_event_requests_store(store: EventStore, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for event in LAX_EVENTS:
        _ingest(spool, "ws_each", event)  # a single event: one line per event
    result = _ingest(spool, "ws_batch", LAX_EVENTS)  # a batch: one line
    assert result.result.accepted == len(LAX_EVENTS)
    spool.flush_once(store)

    each, batch = _rows(store, "ws_each"), _rows(store, "ws_batch")
    assert len(batch) == len(LAX_EVENTS)
    assert batch == each
    # And what both store is what was meant, not merely the same.
    events = dict(zip(_column(batch, "event_id"), _column(batch, "event"), strict=True))
    assert events["e-1"] == "signup" and "(generated)" in events
    revenue = dict(zip(_column(batch, "event_id"), _column(batch, "revenue"), strict=True))
    currency = dict(zip(_column(batch, "event_id"), _column(batch, "currency"), strict=True))
    assert int(revenue["e-1"]) == 1999 and currency["e-1"] == "CNY"
    assert int(revenue["e-3"]) == 500 and currency["e-3"] == "CNY"
    assert currency["e-2"] in (None, "")  # no revenue, no currency
    properties = dict(zip(_column(batch, "event_id"), _column(batch, "properties"), strict=True))
    assert json.loads(properties["e-1"]) == {
        "plan": "试听",
        "price": 100000.0,
        "nested": {"a": [1, 2.5, None]},
    }
    assert properties["e-4"] in (None, "")
    visitors = set(_column(batch, "visitor_id"))
    assert 'v中\\"x' in visitors
    stamps = dict(zip(_column(batch, "event_id"), _column(batch, "ts"), strict=True))
    assert str(stamps["e-1"]).startswith("2024-03-01 12:00:00")
    assert str(stamps["e-2"]).startswith("2024-03-01 12:00:00")
    assert str(stamps["(generated)"]).startswith("2024-01-01 04:59:59")  # late, in its own day
    assert str(stamps["e-4"]).startswith("2024-03-02 08:30:15.25")  # no ts: received time
    spool.close()


def _both_ways(events: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """Spool lines for the same events from one dump per event and from one dump per batch."""
    raw = json.dumps(events).encode()
    one_by_one = service.serialize("ws_1", list(enumerate(EVENT_BATCH.validate_json(raw))), NOW)
    whole = service.serialize_batch("ws_1", list(enumerate(EVENT_BATCH.validate_json(raw))), NOW)
    assert [r.index for r in one_by_one[2]] == [r.index for r in whole[2]]
    return b"".join(one_by_one[1]), whole[1]


def test_batch_lines_are_the_lines_of_one_dump_per_event() -> None:
    with_ids = [{**e, "event_id": e.get("event_id", "given")} for e in LAX_EVENTS]
    each, batch = _both_ways(with_ids)
    assert batch == each
    assert len(batch.splitlines()) == len(LAX_EVENTS)


@pytest.mark.parametrize(
    "tricky",
    [
        {"items": [{"sku": "a"}, {"sku": "b"}]},  # "},{" inside the properties
        {"note": "},{"},  # ... or inside a string
        {"note": "}\n{"},  # an escaped newline stays escaped
    ],
)
def test_batch_lines_when_the_dump_holds_more_item_boundaries(tricky: dict[str, Any]) -> None:
    events = [
        {"event": "a", "event_id": "1"},
        {"event": "b", "event_id": "2", "properties": tricky},
        {"event": "c", "event_id": "3", "user_id": "u", "revenue": 5},
    ]
    each, batch = _both_ways(events)
    assert batch == each
    assert [json.loads(line)["properties"] for line in batch.splitlines()[1:2]] == [tricky]
    assert len(batch.splitlines()) == 3


def test_a_batch_is_one_spool_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool")
    writes: list[bytes] = []
    append = spool.append_line
    monkeypatch.setattr(spool, "append_line", lambda line: (writes.append(line), append(line)))
    _ingest(spool, "ws", [{"event": "a", "event_id": f"e{i}"} for i in range(100)])
    [written] = writes
    records = [json.loads(line) for line in written.splitlines()]
    assert [r["event_id"] for r in records] == [f"e{i}" for i in range(100)]
    assert {(r["workspace_id"], r["received_at"]) for r in records} == {
        ("ws", "2024-03-02 08:30:15.250000")
    }
    spool.close()


def test_bad_items_are_listed_and_the_rest_stored(store: EventStore, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    batch: list[dict[str, Any]] = [
        {"event": "page_view", "event_id": "ok-1", "visitor_id": "v1"},
        {"event": "page_view", "event_id": "bad-ts", "ts": "2099-01-01T00:00:00Z"},
        {
            "event": "page_view",
            "event_id": "bad-deep",
            "properties": {"a": {"b": {"c": {"d": {}}}}},
        },
        {"event": "purchase", "event_id": "bad-owner", "revenue": 5},
        {"event": "page_view", "event_id": "bad-big", "properties": {"x": "y" * 9000}},
        {"event": "page_view", "event_id": "bad-type", "revenue": "lots"},
        {"event": "page_view", "event_id": "ok-2", "visitor_id": "v2"},
    ]
    result = _ingest(spool, "ws", batch).result
    assert result.accepted == 2
    fields = [(r.index, r.errors[0]["field"]) for r in result.rejected]
    assert fields == [
        (1, "ts"),
        (2, "properties"),
        (3, "user_id"),
        (4, "properties"),
        (5, "revenue"),
    ]
    spool.flush_once(store)
    assert sorted(_column(_rows(store, "ws"), "event_id")) == ["ok-1", "ok-2"]
    spool.close()


def test_repeated_ids_are_stored_once_within_and_across_batches(
    store: EventStore, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    one = {"event": "purchase", "event_id": "order-1", "user_id": "u1", "revenue": 100}
    two = {"event": "purchase", "event_id": "order-2", "user_id": "u1", "revenue": 200}
    _ingest(spool, "ws", [one, one, two])
    _ingest(spool, "ws", [two])  # same segment, another line
    _ingest(spool, "ws", one)  # a per-event line beside the batch lines
    first = spool.flush_once(store)
    assert (first.inserted, first.duplicates) == (2, 3)
    again = _ingest(spool, "ws", [one, {**two, "event_id": "order-3"}])
    assert again.result.accepted == 2
    second = spool.flush_once(store)  # a later segment
    assert (second.inserted, second.duplicates) == (1, 1)
    assert sorted(_column(_rows(store, "ws"), "event_id")) == ["order-1", "order-2", "order-3"]
    assert sum(int(r) for r in _column(_rows(store, "ws"), "revenue")) == 500
    spool.close()


def test_sigkill_loses_no_acknowledged_batch(store: EventStore, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    batches, size = 7, 1000
    child = textwrap.dedent(
        f"""
        import json, time
        from datetime import UTC, datetime
        from liebian.events import service
        from liebian.events.spool import Spool
        spool = Spool({str(spool_dir)!r}, max_segment_bytes=64 * 1024)
        for b in range({batches}):
            body = [{{"event": "page_view", "event_id": f"e{{b}}-{{i}}", "visitor_id": "v"}}
                    for i in range({size})]
            service.ingest(workspace_id="ws_kill", raw=json.dumps(body).encode(), spool=spool,
                           now=datetime.now(UTC))
        print("answered", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"answered"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    spool = Spool(spool_dir)  # recovery seals the segment the dead process left open
    assert spool.flush_once(store).inserted == batches * size
    assert store.count("ws_kill") == batches * size
    spool.close()


def _limit_blob(size: int) -> dict[str, Any]:
    """Flat properties whose dump is exactly ``size`` bytes."""
    return {"x": "y" * (size - len('{"x":""}'))}


OVER = {"event": "a", "event_id": "over", "properties": _limit_blob(MAX_PROPERTIES_BYTES + 1)}
AT_LIMIT = {"event": "a", "event_id": "at", "properties": _limit_blob(MAX_PROPERTIES_BYTES)}
DEEP = {"event": "a", "event_id": "deep", "properties": {"a": {"b": {"c": {"d": {"e": 1}}}}}}


@pytest.mark.parametrize(
    ("others", "exact"),
    [
        ([], False),  # nothing can break a limit: checked on the batch's one dump
        ([AT_LIMIT], True),  # kept, but its line is longer than the limit: measured exactly
        ([OVER], True),
        ([DEEP], True),
        ([{"event": "b", "event_id": "n", "properties": {"a": {"b": [1]}}}], True),  # nests
        ([{"event": "b", "event_id": "s", "visitor_id": "v{"}], True),  # a brace in a string
        ([{"event": "b", "event_id": "big", "properties": {"i": 2**70}}], True),  # no JSON
    ],
)
def test_batch_properties_limits_are_the_per_event_ones(
    others: list[dict[str, Any]], exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch checks the properties' size and depth on its one dump when nothing there can
    break them; whichever way it goes, it keeps and refuses what one event at a time does."""
    events = [
        {"event": "a", "event_id": "near", "properties": _limit_blob(MAX_PROPERTIES_BYTES - 100)},
        {"event": "a", "event_id": "empty", "properties": {}},
        {"event": "a", "event_id": "no-currency", "revenue": None},
        {"event": "a", "event_id": "null-currency", "currency": "USD"},
        {"event": "a", "event_id": "ok", "visitor_id": "v", "properties": {"p": "/"}},
        *others,
    ]
    raw = json.dumps(events).encode()
    one_by_one = service.serialize("ws_1", list(enumerate(EVENT_BATCH.validate_json(raw))), NOW)
    calls: list[int] = []
    check = service._check_properties
    monkeypatch.setattr(service, "_check_properties", lambda *a: (calls.append(1), check(*a))[1])
    whole = service.serialize_batch("ws_1", list(enumerate(EVENT_BATCH.validate_json(raw))), NOW)
    assert bool(calls) == exact
    assert whole[1] == b"".join(one_by_one[1])
    assert [(r.index, r.errors) for r in whole[2]] == [(r.index, r.errors) for r in one_by_one[2]]
    kept = [json.loads(line) for line in whole[1].splitlines()]
    assert [k["event_id"] for k in kept[:5]] == [
        "near", "empty", "no-currency", "null-currency", "ok"
    ]  # fmt: skip
    assert "currency" not in kept[2] and kept[3]["currency"] is None and "properties" not in kept[1]
    assert all(k["ts"] == "2024-03-02T08:30:15.250000+00:00" for k in kept)
    refused = {events[r.index]["event_id"]: r.errors[0]["problem"] for r in whole[2]}
    expected = {e["event_id"] for e in others} & {"over", "deep", "big"}
    assert set(refused) == expected
    assert all(("bytes; at most" in refused[k]) for k in expected & {"over"})
    assert all(("levels deep" in refused[k]) for k in expected & {"deep"})
