from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from testkit import make_key


def _post(client: Any, headers: dict[str, str], body: Any) -> Any:
    return client.post(
        "/api/v1/events",
        content=json.dumps(body).encode(),
        headers={**headers, "content-type": "application/json"},
    )


def _stored(runtime: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    runtime.flush_events()
    return runtime.event_store.query(sql, params)


def test_single_event_is_acknowledged_and_stored(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    resp = _post(
        client,
        owner,
        {"event": "signup", "event_id": "e1", "user_id": "u1", "properties": {"plan": "试听"}},
    )
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 1, "event_ids": ["e1"], "rejected": []}
    rows = _stored(
        runtime, "SELECT event, user_id, properties FROM events WHERE event_id = $id", id="e1"
    )
    assert rows == [("signup", "u1", '{"plan":"试听"}')]


def test_same_event_id_is_stored_once(client: Any, owner: dict[str, str], runtime: Any) -> None:
    event = {
        "event": "purchase",
        "event_id": "order-9",
        "user_id": "u1",
        "revenue": 9900,
        "currency": "CNY",
    }
    assert _post(client, owner, [event, event]).json()["accepted"] == 2
    runtime.flush_events()
    assert _post(client, owner, event).status_code == 202
    rows = _stored(runtime, "SELECT count(*), sum(revenue) FROM events WHERE event_id = 'order-9'")
    assert rows == [(1, 9900)]


def test_a_resent_event_without_event_id_is_stored_once(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    """A client retrying after a timeout resends the same events: with their own ``ts`` they
    get the same content-derived ids, so neither the event nor a purchase's order counts twice;
    a different event at the same instant is still its own."""
    ts = "2026-11-30T08:00:00+08:00"
    purchase = {"event": "purchase", "user_id": "u7", "revenue": 5000, "ts": ts}
    view = {"event": "page_view", "visitor_id": "v7", "ts": ts, "properties": {"path": "/a"}}
    other = {**view, "properties": {"path": "/b"}}
    assert _post(client, owner, [purchase, view]).json()["accepted"] == 2
    runtime.flush_events()
    assert _post(client, owner, [purchase, view, other]).json()["accepted"] == 3
    runtime.flush_events()
    rows = _stored(
        runtime,
        "SELECT event, count(*), sum(revenue) FROM events WHERE ts = TIMESTAMP '2026-11-30 00:00:00'"
        " GROUP BY event ORDER BY event",
    )
    assert rows == [("page_view", 2, None), ("purchase", 1, 5000)]
    # Without ts the server's clock makes each try a new event (documented: send event_id).
    assert _post(client, owner, {"event": "page_view", "visitor_id": "v8"}).status_code == 202
    assert _post(client, owner, {"event": "page_view", "visitor_id": "v8"}).status_code == 202
    runtime.flush_events()
    assert _stored(runtime, "SELECT count(*) FROM events WHERE visitor_id = 'v8'") == [(2,)]


def test_an_idempotency_key_makes_a_resend_without_ids_or_ts_store_once(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    """Neither event_id nor ts: the Idempotency-Key header gives each event an id from the
    key and its place in the body, returned in ``event_ids``; the retry gets the same ids."""
    body = [
        {"event": "purchase", "user_id": "u9", "revenue": 1200},
        {"event": "page_view", "visitor_id": "v9"},
        {"event": "signup"},
        {"event": "page_view", "visitor_id": "v9", "event_id": "mine-1"},
    ]
    keyed = {**owner, "Idempotency-Key": "order-batch-2026-12-02/1"}
    first = _post(client, keyed, body).json()
    runtime.flush_events()
    again = _post(client, keyed, body).json()
    assert first["accepted"] == again["accepted"] == 4
    assert first["event_ids"] == again["event_ids"]
    assert first["event_ids"][3] == "mine-1"  # a client's own id is kept
    assert all(i.startswith("evk_") for i in first["event_ids"][:3])
    assert len(set(first["event_ids"])) == 4
    runtime.flush_events()
    rows = _stored(
        runtime,
        "SELECT event_id, count(*), sum(revenue) FROM events WHERE user_id = 'u9' OR"
        " visitor_id = 'v9' OR (event = 'signup' AND event_id LIKE 'evk_%') GROUP BY event_id"
        " ORDER BY event_id",
    )
    assert sorted(r[0] for r in rows) == sorted(first["event_ids"])
    assert [r[1] for r in rows] == [1, 1, 1, 1]
    assert sum(r[2] or 0 for r in rows) == 1200
    # Another key is another request: new events.
    other = _post(client, {**owner, "Idempotency-Key": "order-batch-2026-12-02/2"}, body[:1])
    assert other.json()["event_ids"][0] not in first["event_ids"]
    # A key that is not 1-128 printable ASCII characters: 422 naming the header, nothing stored.
    for bad in ("x" * 129, "键"):
        resp = client.post(
            "/api/v1/events",
            content=json.dumps({"event": "page_view", "visitor_id": "v-bad"}).encode("utf-8"),
            headers={**owner, "content-type": "application/json", "Idempotency-Key": bad.encode()},
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "invalid_idempotency_key"
    runtime.flush_events()
    assert _stored(runtime, "SELECT count(*) FROM events WHERE visitor_id = 'v-bad'") == [(0,)]


def test_batch_stores_valid_items_and_names_bad_ones(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    deep: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    batch = [
        {"event": "page_view", "event_id": "ok-1", "visitor_id": "v1"},
        {"event": "page_view", "event_id": "bad-ts", "visitor_id": "v1", "ts": future},
        {"event": "purchase", "event_id": "bad-rev", "user_id": "u", "revenue": "lots"},
        {"event": "page_view", "event_id": "bad-field", "colour": "red"},
        {"event": "page_view", "event_id": "bad-deep", "properties": deep},
        {"event": "page_view", "event_id": "bad-big", "properties": {"x": "y" * 9000}},
        {"event": "bad name!", "event_id": "bad-name"},
        {
            "event": "purchase",
            "event_id": "bad-cur",
            "user_id": "u",
            "revenue": 1,
            "currency": "rmb",
        },
        {"event": "page_view", "event_id": "ok-2", "visitor_id": "v2"},
    ]
    resp = _post(client, owner, {"events": batch})
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7]
    fields = {r["index"]: r["errors"][0]["field"] for r in body["rejected"]}
    assert (
        fields[1] == "ts"
        and fields[2] == "revenue"
        and fields[3] == "colour"
        and fields[4] == "properties"
    )
    stored = _stored(runtime, "SELECT event_id FROM events ORDER BY event_id")
    assert stored == [("ok-1",), ("ok-2",)]


def test_whole_request_errors(client: Any, owner: dict[str, str]) -> None:
    bad_json = client.post(
        "/api/v1/events",
        content=b"{not json",
        headers={**owner, "content-type": "application/json"},
    )
    assert bad_json.status_code == 422 and bad_json.json()["error"]["code"] == "malformed_json"
    single_bad = _post(client, owner, {"event": "x", "revenue": -5, "user_id": "u"})
    assert single_bad.status_code == 422 and "revenue" in single_bad.json()["error"]["message"]
    all_bad = _post(client, owner, [{"nope": 1}, {"event": ""}])
    assert all_bad.status_code == 422 and len(all_bad.json()["error"]["details"]) == 2
    too_many = _post(client, owner, [{"event": "e"}] * 10_001)
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "batch_too_large"
    assert _post(client, owner, []).status_code == 422
    assert _post(client, owner, "text").status_code == 422


def test_late_events_land_in_their_own_time(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    past = "2026-01-02T23:30:00+08:00"
    _post(client, owner, {"event": "page_view", "event_id": "late", "visitor_id": "v", "ts": past})
    rows = _stored(runtime, "SELECT ts FROM events WHERE event_id = 'late'")
    assert rows[0][0] == datetime(2026, 1, 2, 15, 30)  # stored as UTC


def test_identity_alias_from_event_and_endpoint(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    _post(client, owner, {"event": "signup", "visitor_id": "v-1", "user_id": "u-1"})
    assert (
        client.post(
            "/api/v1/identify", json={"visitor_id": "v-2", "user_id": "u-2"}, headers=owner
        ).status_code
        == 204
    )
    rows = sorted(_stored(runtime, "SELECT visitor_id, user_id FROM aliases"))
    assert rows == [("v-1", "u-1"), ("v-2", "u-2")]


def test_events_are_scoped_to_the_key_workspace(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    other_ws, other = make_key(runtime, "operator")
    _post(client, other, {"event": "signup", "event_id": "same", "user_id": "u"})
    _post(client, owner, {"event": "signup", "event_id": "same", "user_id": "u"})
    rows = _stored(
        runtime, "SELECT count(DISTINCT workspace_id) FROM events WHERE event_id = 'same'"
    )
    assert rows == [(2,)]  # an event_id dedupes within a workspace only
    _, viewer = make_key(runtime, "viewer", other_ws)
    assert _post(client, viewer, {"event": "x"}).status_code == 403
