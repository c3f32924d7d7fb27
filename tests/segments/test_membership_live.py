"""Membership follows the stream: events through the real ingestion path (spool → flusher →
store → after-load hook), tag changes on the bus; history records the cause; the periodic
rebuild reconciles what time changed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from liebian.app.runtime import Runtime
from liebian.kit.db import session_scope

from .helpers import contacts, events, tag, workspace


def _members(client: Any, headers: dict[str, str], sid: str) -> list[str]:
    r = client.get(f"/api/v1/segments/{sid}/members", headers=headers)
    return sorted(m["external_id"] for m in r.json()["items"])


def _wait_for(check: Any, timeout: float = 15.0) -> Any:
    """Poll until ``check()`` is truthy (the keeper runs in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_events_and_tag_changes_move_membership(client: Any, runtime: Runtime) -> None:
    ws, headers = workspace(runtime)
    ids = contacts(runtime, ws, ["mom", "dad", "kid"])
    mom_tag = tag(runtime, ws, "宝妈", [ids["mom"], ids["dad"]])
    events(runtime, ws, ("mom", "purchase", 10), ("dad", "purchase", 3), ("dad", "visit", 1))
    seen: list[tuple[str, dict[str, Any]]] = []
    runtime.bus.subscribe("segment.entered", lambda p: seen.append(("entered", p)))
    runtime.bus.subscribe("segment.exited", lambda p: seen.append(("exited", p)))
    cond = {
        "type": "and",
        "conditions": [
            {"type": "tags", "match": "any", "tags": [mom_tag]},
            {
                "type": "event",
                "event": "purchase",
                "window": {"last_days": 30},
                "measure": "count",
                "op": "gte",
                "value": 2,
            },
        ],
    }
    sid = client.post(
        "/api/v1/segments", json={"name": "复购", "condition": cond}, headers=headers
    ).json()["id"]
    assert _members(client, headers, sid) == []

    # a second purchase through the public ingestion API makes mom a member
    now = datetime.now(UTC)
    r = client.post(
        "/api/v1/events",
        json=[
            {"event": "purchase", "user_id": "mom", "revenue": 990, "ts": now.isoformat()},
            {"event": "visit", "user_id": "kid"},
        ],
        headers=headers,
    )
    assert r.status_code == 202, r.text
    assert _wait_for(lambda: _members(client, headers, sid) == ["mom"])
    hist = client.get(f"/api/v1/segments/{sid}/history", headers=headers).json()["items"]
    assert [(h["external_id"], h["change"], h["cause"]) for h in hist] == [
        ("mom", "entered", "event:purchase")
    ]
    assert _wait_for(lambda: seen)
    assert seen[0][0] == "entered" and seen[0][1]["contact_ids"] == [ids["mom"]]

    # a tag removed (the bus topic contacts publishes) makes her leave
    from liebian.contacts.models import ContactTag
    from liebian.kit.bus import publish_after_commit

    with session_scope(runtime.sessions) as session:
        session.query(ContactTag).filter(ContactTag.contact_id == ids["mom"]).delete()
        publish_after_commit(
            session,
            "contact.tags_changed",
            {
                "workspace_id": ws,
                "contact_ids": [ids["mom"]],
                "tag_ids": [mom_tag],
                "change": "removed",
            },
        )
    assert _wait_for(lambda: _members(client, headers, sid) == [])
    hist = client.get(f"/api/v1/segments/{sid}/history", headers=headers).json()["items"]
    assert (hist[0]["change"], hist[0]["cause"]) == ("exited", "tags_changed")
    assert _wait_for(lambda: any(kind == "exited" for kind, _ in seen))

    # the entry was also written to the event store as an event
    runtime.flush_events()
    assert runtime.event_store is not None
    assert _wait_for(lambda: "segment_entered" in runtime.event_store.event_names(ws))


def test_rebuild_reconciles_what_time_changed(client: Any, runtime: Runtime) -> None:
    ws, headers = workspace(runtime)
    contacts(runtime, ws, ["old", "new"])
    events(runtime, ws, ("old", "visit", 24 * 13.99), ("new", "visit", 1))
    quiet = {"type": "event", "event": "visit", "window": {"last_days": 14}, "did": False}
    sid = client.post(
        "/api/v1/segments", json={"name": "沉默", "condition": quiet}, headers=headers
    ).json()["id"]
    assert _members(client, headers, sid) == []
    keeper = runtime.extras["segments_keeper"]
    # nothing happened, but two hours later "old" has been quiet for 14 days
    with session_scope(runtime.sessions) as session:
        from liebian.segments import repository, service

        seg = repository.get(session, ws, sid)
        assert seg is not None
        with runtime.read_sessions() as reader:
            ch = service.build(
                session,
                reader,
                runtime.event_store,
                seg,
                now=datetime.now(UTC) + timedelta(hours=2),
            )
    assert ch.version == 2 and len(ch.entered) == 1
    assert _members(client, headers, sid) == ["old"]
    assert keeper.rebuild_all(ws) == 1  # and the scheduler's rebuild (now) puts it back
    assert _members(client, headers, sid) == []
    got = client.get(f"/api/v1/segments/{sid}", headers=headers).json()
    assert got["version"] == 3


def test_batches_of_events_no_condition_names_are_not_read(client: Any, runtime: Runtime) -> None:
    """The after-load hook reads a batch only for the events a live condition names: clicks
    with no segment about clicks cost the keeper nothing; once one exists, they count."""
    ws, headers = workspace(runtime)
    contacts(runtime, ws, ["a"])
    keeper = runtime.extras["segments_keeper"]
    post = {"event": "click", "user_id": "a"}
    assert client.post("/api/v1/events", json=[post] * 3, headers=headers).status_code == 202
    runtime.flush_events()
    assert keeper.wanted_events() == frozenset()
    assert keeper.passes == 0
    cond = {"type": "event", "event": "click", "measure": "count", "op": "gte", "value": 5}
    sid = client.post(
        "/api/v1/segments", json={"name": "点击", "condition": cond}, headers=headers
    ).json()["id"]
    assert keeper.wanted_events() == frozenset({"click"})  # seen at once, no 2 s wait
    assert client.post("/api/v1/events", json=[post] * 3, headers=headers).status_code == 202
    runtime.flush_events()
    assert _wait_for(lambda: _members(client, headers, sid) == ["a"])
    assert keeper.passes >= 1
