"""Rule tags keep themselves current (a click on a 育儿 link tags 育儿兴趣, a second purchase
tags 复购2次), each change recorded with why; the contacts list filters by segment."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from liebian.app.runtime import Runtime
from liebian.kit.db import session_scope

from .helpers import contacts, events, workspace
from .test_membership_live import _wait_for


def _holders(runtime: Runtime, tag_id: str) -> list[str]:
    from liebian.contacts.models import Contact, ContactTag

    with session_scope(runtime.sessions) as session:
        rows = session.execute(
            select(Contact.external_id)
            .join(ContactTag, ContactTag.contact_id == Contact.id)
            .where(ContactTag.tag_id == tag_id)
        )
        return sorted(r[0] for r in rows)


def test_rule_tags_follow_events(client: Any, runtime: Runtime) -> None:
    ws, headers = workspace(runtime)
    ids = contacts(runtime, ws, ["p1", "p2"])
    events(runtime, ws, ("p1", "purchase", 30))
    r = client.post(
        "/api/v1/rule-tags",
        json={
            "name": "复购2次",
            "condition": {
                "type": "event",
                "event": "purchase",
                "measure": "count",
                "op": "gte",
                "value": 2,
            },
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    repeat = r.json()["id"]
    assert (r.json()["kind"], r.json()["added"]) == ("rule", 0)
    r = client.post(
        "/api/v1/rule-tags",
        json={
            "name": "育儿兴趣",
            "condition": {
                "type": "event",
                "event": "click",
                "where": {"link_id": "lnk_parenting"},
                "did": True,
            },
        },
        headers=headers,
    )
    parenting = r.json()["id"]
    # a rule tag cannot be applied by hand
    r = client.post(
        "/api/v1/rule-tags",
        json={"name": "坏规则", "condition": {"type": "event", "event": "click", "did": "yes"}},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["path"] == "$.did"

    client.post(
        "/api/v1/events",
        json=[
            {"event": "purchase", "user_id": "p1", "revenue": 5000},
            {"event": "click", "user_id": "p2", "link_id": "lnk_parenting"},
            {"event": "click", "user_id": "p1", "link_id": "lnk_other"},
        ],
        headers=headers,
    )
    assert _wait_for(lambda: _holders(runtime, repeat) == ["p1"])
    assert _wait_for(lambda: _holders(runtime, parenting) == ["p2"])
    from liebian.contacts.models import TagChange

    with session_scope(runtime.sessions) as session:
        change = session.scalars(select(TagChange).where(TagChange.tag_id == repeat)).one()
    assert (change.contact_id, change.change) == (ids["p1"], "added")
    assert change.reason == "规则: event:purchase"

    # redefine: three purchases needed now -> p1 loses the tag, recorded as removed
    r = client.put(
        f"/api/v1/rule-tags/{repeat}",
        json={
            "condition": {
                "type": "event",
                "event": "purchase",
                "measure": "count",
                "op": "gte",
                "value": 3,
            }
        },
        headers=headers,
    )
    assert (r.status_code, r.json()["removed"]) == (200, 1)
    assert _holders(runtime, repeat) == []

    # the contacts list filtered by a segment
    sid = client.post(
        "/api/v1/segments",
        json={
            "name": "点过育儿",
            "condition": {"type": "tags", "match": "any", "tags": [parenting]},
        },
        headers=headers,
    ).json()["id"]
    listed = client.get(f"/api/v1/contacts?segment={sid}", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [c["external_id"] for c in listed.json()["items"]] == ["p2"]
    bad = client.get("/api/v1/contacts?segment=seg_01NOPE0000000000000000000", headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "segment"
