"""Contacts list, search, profile, tags and custom attributes over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).parent))

from people_helpers import person, tag, ws_of

from liebian.contacts.models import ContactAttribute, TagChange
from liebian.contacts.tags import TAGS_CHANGED
from liebian.kit.db import session_scope
from testkit import make_key


def _ids(resp: Any) -> list[str]:
    """External ids of a page, sorted: ids made in the same millisecond have no set order."""
    assert resp.status_code == 200, resp.text
    return sorted(c["external_id"] for c in resp.json()["items"])


def test_search_never_decrypts_and_masks_by_role(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = ws_of(client, owner)
    person(
        runtime, ws, "u1", phone="+86 138-1234-5678", email="Wang.Xiao@Gmail.com", nickname="王小明"
    )
    person(runtime, ws, "u2", nickname="王大锤的店铺")
    person(runtime, ws, "u3", nickname="Alice")
    get = lambda q, h=owner: client.get("/api/v1/contacts", params={"q": q}, headers=h)  # noqa: E731
    assert _ids(get("u2")) == ["u2"]
    assert _ids(get("13812345678")) == ["u1"]  # another spelling of the same phone
    assert _ids(get("wangxiao@gmail.com")) == ["u1"]  # same mailbox after normalization
    assert _ids(get("王")) == ["u1", "u2"]  # 1-char prefix
    assert _ids(get("王小")) == ["u1"]
    assert _ids(get("王大锤的店")) == ["u2"]  # longer than the hashes: verified on the page
    assert _ids(get("王大锤的X")) == []
    assert _ids(get("alI")) == ["u3"]  # case-folded
    # the table holds no clear nickname, and the prefix hashes are not the text
    with runtime.engine.connect() as conn:
        raw = " ".join(str(v) for r in conn.execute(text("SELECT * FROM contacts")) for v in r)
    assert "王" not in raw and "Alice" not in raw
    _, analyst = make_key(runtime, "analyst", ws)
    item = get("u1", analyst).json()["items"][0]
    assert (item["phone"], item["nickname"]) == ("138****5678", "王**")
    assert get("u1").json()["items"][0]["phone"] == "13812345678"
    _, viewer = make_key(runtime, "viewer", ws)
    assert get("u1", viewer).status_code == 403
    bad = get("x" * 129)
    assert bad.status_code == 422


def test_filters_and_cursor_pages(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = ws_of(client, owner)
    ids = [person(runtime, ws, f"p{i}") for i in range(7)]
    vip, new = tag(client, owner, "VIP"), tag(client, owner, "新客", color="#ff0000")
    r = client.post(
        "/api/v1/tags/bulk",
        json={"tag_ids": [vip], "external_ids": ["p1", "p2", "p3"]},
        headers=owner,
    )
    assert r.json() == {"changed": 3, "contacts": 3}
    client.post(
        "/api/v1/tags/bulk", json={"tag_ids": [new], "contact_ids": ids[2:5]}, headers=owner
    )
    lst = lambda **p: _ids(client.get("/api/v1/contacts", params=p, headers=owner))  # noqa: E731
    assert lst(tag=[vip, new]) == ["p1", "p2", "p3", "p4"]
    assert lst(tag=[vip, new], tag_match="all") == ["p2", "p3"]
    with session_scope(runtime.sessions) as session:
        session.execute(
            text("UPDATE contacts SET first_channel = 'wechat', first_seen_at = :t WHERE external_id IN ('p5', 'p6')"),
            {"t": "2026-10-01 00:00:00"},
        )  # fmt: skip
    assert lst(channel="wechat") == ["p5", "p6"]
    assert lst(
        first_seen_from="2026-09-30T00:00:00+00:00", first_seen_to="2026-10-02T00:00:00Z"
    ) == ["p5", "p6"]
    assert client.get(
        "/api/v1/contacts", params={"first_seen_from": "2026-09-30T00:00:00"}, headers=owner
    ).json()["error"]["details"] == {"field": "first_seen_from"}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/contacts", params=params, headers=owner).json()
        seen += [c["external_id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    # every contact once, in id order (newest first)
    assert sorted(seen) == [f"p{i}" for i in range(7)] and len(seen) == 7
    with session_scope(runtime.sessions) as session:
        by_id = dict(session.execute(text("SELECT external_id, id FROM contacts")).all())
    assert [by_id[e] for e in seen] == sorted(by_id.values(), reverse=True)
    assert client.get("/api/v1/contacts", params={"cursor": "zz"}, headers=owner).status_code == 422


def test_tags_crud_changes_topic_and_webhook(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws = ws_of(client, owner)
    cid = person(runtime, ws, "u1")
    group = client.post("/api/v1/tag-groups", json={"name": "生命周期"}, headers=owner).json()
    t = tag(client, owner, "活跃", group_id=group["id"], color="#00AA00")
    assert client.post("/api/v1/tags", json={"name": "活跃"}, headers=owner).status_code == 409
    assert (
        client.post("/api/v1/tags", json={"name": "x", "color": "red"}, headers=owner).status_code
        == 422
    )
    client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/h", "topics": [TAGS_CHANGED]},
        headers=owner,
    )
    heard: list[Any] = []
    runtime.bus.subscribe(TAGS_CHANGED, heard.append)
    r = client.post(f"/api/v1/contacts/{cid}/tags", json={"tag_ids": [t]}, headers=owner)
    assert r.json() == {"changed": 1, "contacts": 1}
    again = client.post("/api/v1/contacts/u1/tags", json={"tag_ids": [t]}, headers=owner)
    assert again.json()["changed"] == 0
    assert heard == [{"workspace_id": ws, "contact_ids": [cid], "tag_ids": [t], "change": "added"}]
    profile = client.get("/api/v1/contacts/u1", headers=owner).json()
    assert [x["name"] for x in profile["tags"]] == ["活跃"]
    assert client.get("/api/v1/tags", headers=owner).json()["items"][0]["contacts_count"] == 1
    assert client.get("/api/v1/tag-groups", headers=owner).json()["items"][0]["tags_count"] == 1
    r = client.delete(f"/api/v1/contacts/u1/tags/{t}", headers=owner)
    assert r.json()["changed"] == 1 and heard[-1]["change"] == "removed"
    missing = client.post("/api/v1/contacts/u1/tags", json={"tag_ids": ["tag_nope"]}, headers=owner)
    assert missing.status_code == 422 and missing.json()["error"]["details"]["field"] == "tag_ids"
    unknown = client.post(
        "/api/v1/tags/bulk", json={"tag_ids": [t], "external_ids": ["u1", "ghost"]}, headers=owner
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["missing_external_ids"] == ["ghost"]
    csv_body = "external_id\nu1\n"
    r = client.post(
        "/api/v1/tags/bulk.csv", params={"tag_id": [t]}, content=csv_body.encode(),
        headers={**owner, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.json() == {"changed": 1, "contacts": 1}, r.text
    with session_scope(runtime.sessions) as session:
        changes = session.scalars(select(TagChange.change).order_by(TagChange.at)).all()
        events = session.execute(
            text("SELECT data FROM webhook_events WHERE topic = :t"), {"t": TAGS_CHANGED}
        ).all()
    assert changes == ["added", "removed", "added"]
    assert len(events) == 3 and "u1" in str(events[0][0])
    # Each change is an event in the event store too, once, with the tag's name.
    runtime.flush_events()
    stored = runtime.event_store.query(
        "SELECT event, user_id, json_extract_string(properties, '$.tag') FROM events"
        " WHERE event LIKE 'tag_%' ORDER BY ts, event",
        {},
    )
    assert sorted(stored) == sorted(
        [("tag_added", "u1", "活跃"), ("tag_removed", "u1", "活跃"), ("tag_added", "u1", "活跃")]
    )
    assert client.delete(f"/api/v1/tags/{t}", headers=owner).status_code == 204
    assert client.get("/api/v1/contacts/u1", headers=owner).json()["tags"] == []
    assert client.delete(f"/api/v1/tag-groups/{group['id']}", headers=owner).status_code == 204


def test_custom_attributes_are_typed(client: Any, owner: dict[str, str], runtime: Any) -> None:
    ws = ws_of(client, owner)
    person(runtime, ws, "u1")
    for key, type_ in (
        ("level", "number"),
        ("city", "string"),
        ("birthday", "date"),
        ("vip", "bool"),
    ):
        r = client.post(
            "/api/v1/contact-attributes",
            json={"key": key, "type": type_, "label": key},
            headers=owner,
        )
        assert r.status_code == 201, r.text
    assert (
        client.post(
            "/api/v1/contact-attributes", json={"key": "phone", "type": "string"}, headers=owner
        ).status_code
        == 422
    )
    ok = client.patch(
        "/api/v1/contacts/u1",
        json={"attributes": {"level": 3, "city": "杭州", "birthday": "1990-05-01", "vip": True}},
        headers=owner,
    )
    assert ok.status_code == 200, ok.text
    # The audit log records that the values changed, never what they are (they may be personal).
    log = client.get("/api/v1/audit", params={"limit": 200}, headers=owner).json()["items"]
    changed = [
        fields
        for entry in log
        for obj, change in (entry.get("changes") or {}).items()
        if obj.startswith("contact_attributes:")
        for fields in [change["fields"]]
    ]
    assert changed and all(f["value_str"][1] == "***" for f in changed if "value_str" in f)
    dumped = json.dumps(log, ensure_ascii=False)
    assert "杭州" not in dumped and "1990-05-01" not in dumped
    assert ok.json()["attributes"] == {
        "birthday": "1990-05-01",
        "city": "杭州",
        "level": 3.0,
        "vip": True,
    }
    for body, field in (
        ({"level": "high"}, "attributes.level"),
        ({"nope": 1}, "attributes.nope"),
        ({"birthday": "01/05/1990"}, "attributes.birthday"),
    ):
        r = client.patch(
            "/api/v1/contacts/u1", json={"attributes": {"city": "上海", **body}}, headers=owner
        )
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == field
    assert client.get("/api/v1/contacts/u1", headers=owner).json()["attributes"]["city"] == "杭州"
    bad_phone = client.patch("/api/v1/contacts/u1", json={"phone": "12ab"}, headers=owner)
    assert bad_phone.status_code == 422
    client.patch("/api/v1/contacts/u1", json={"attributes": {"vip": None}}, headers=owner)
    assert client.delete("/api/v1/contact-attributes/level", headers=owner).status_code == 204
    with session_scope(runtime.sessions) as session:
        keys = session.scalars(select(ContactAttribute.key).order_by(ContactAttribute.key)).all()
    assert keys == ["birthday", "city"]


def test_identify_creates_aliases_and_sets_attributes(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws_of(client, owner)
    client.post("/api/v1/contact-attributes", json={"key": "plan", "type": "string"}, headers=owner)
    bad = client.post(
        "/api/v1/identify",
        json={"visitor_id": "v1", "user_id": "u9", "$set": {"plan": "pro", "oops": 1}},
        headers=owner,
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "$set.oops"
    with session_scope(runtime.sessions) as session:
        assert session.scalar(text("SELECT count(*) FROM contacts")) == 0
    assert runtime.event_store.query("SELECT count(*) FROM aliases", {})[0][0] == 0
    r = client.post(
        "/api/v1/identify",
        json={"visitor_id": "v1", "user_id": "u9", "$set": {"plan": "pro"},
              "aliases": {"wx_openid": "o_abc"}},
        headers=owner,
    )  # fmt: skip
    assert r.status_code == 204, r.text
    profile = client.get("/api/v1/contacts/u9", headers=owner).json()
    assert {(a["kind"], a["value"]) for a in profile["aliases"]} == {
        ("visitor_id", "v1"), ("wx_openid", "o_abc"),
    }  # fmt: skip
    assert profile["attributes"] == {"plan": "pro"}
    assert profile["computed"]["first_seen_at"] is not None
    # the openid finds the person; another person claiming it is told to merge
    assert _ids(client.get("/api/v1/contacts", params={"q": "o_abc"}, headers=owner)) == ["u9"]
    taken = client.post(
        "/api/v1/identify",
        json={"visitor_id": "v2", "user_id": "u10", "aliases": {"wx_openid": "o_abc"}},
        headers=owner,
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "alias_taken"
    # events carrying both ids make aliases through the ingestion hook
    ev = client.post(
        "/api/v1/events",
        json={"event": "page_view", "visitor_id": "v7", "user_id": "u9",
              "properties": {"$set": {"plan": "max"}}},
        headers=owner,
    )  # fmt: skip
    assert ev.status_code == 202, ev.text
    runtime.extras["event_hooks_worker"].drain()  # applied after the 202, by the hooks worker
    profile = client.get("/api/v1/contacts/u9", headers=owner).json()
    assert ("visitor_id", "v7") in {(a["kind"], a["value"]) for a in profile["aliases"]}
    assert profile["attributes"] == {"plan": "max"}
    with session_scope(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(ContactAttribute)) == 1


def test_purchases_keep_orders_and_gmv_once_each(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    ws_of(client, owner)
    buy = {"event": "purchase", "user_id": "b1", "revenue": 12_000, "event_id": "o-1"}
    for body in (buy, buy, {**buy, "event_id": "o-2", "revenue": 3_000}):  # o-1 resent
        assert client.post("/api/v1/events", json=body, headers=owner).status_code == 202
    client.post(
        "/api/v1/events",
        json={"event": "refund", "user_id": "b1", "revenue": 3_000, "event_id": "r-1"},
        headers=owner,
    )
    runtime.extras["event_hooks_worker"].drain()
    c = client.get("/api/v1/contacts/b1", headers=owner).json()["computed"]
    assert (c["orders_count"], c["gmv_cents"], c["aov_cents"]) == (2, 12_000, 6_000)
    assert c["rfm_class"] is not None and c["last_order_at"] is not None
