"""The segments API on SQLite and PostgreSQL: CRUD, preview, members, history, sizes, manual
and static membership, and bad input answered with a 4xx naming the field."""

from __future__ import annotations

from typing import Any

from liebian.app.runtime import Runtime

from .helpers import contacts, events, key, tag, workspace

BOUGHT_TWICE = {
    "type": "event",
    "event": "purchase",
    "window": {"last_days": 30},
    "measure": "count",
    "op": "gte",
    "value": 2,
}


def _setup(runtime: Runtime) -> tuple[str, dict[str, str], dict[str, str], str]:
    ws, headers = workspace(runtime)
    ids = contacts(runtime, ws, ["a", "b", "c", "d"])
    vip = tag(runtime, ws, "宝妈", [ids["a"], ids["b"], ids["c"]])
    events(
        runtime,
        ws,
        ("a", "purchase", 5),
        ("a", "purchase", 30),
        ("b", "purchase", 2),
        ("c", "purchase", 1),
        ("c", "purchase", 2),
        ("c", "visit", 1),
        ("d", "purchase", 1),
        ("d", "purchase", 2),
    )
    return ws, headers, ids, vip


def test_preview_create_members_history_sizes(client: Any, runtime: Runtime) -> None:
    _ws, headers, ids, vip = _setup(runtime)
    cond = {
        "type": "and",
        "conditions": [
            {"type": "tags", "match": "any", "tags": [vip]},
            BOUGHT_TWICE,
            {"type": "event", "event": "visit", "window": {"last_days": 14}, "did": False},
        ],
    }
    r = client.post("/api/v1/segments/preview", json={"condition": cond}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1
    assert r.json()["sample"] == [{"id": ids["a"], "external_id": "a"}]
    assert r.json()["warnings"] == []
    unseen = {"type": "event", "event": "refund", "did": True}
    r = client.post("/api/v1/segments/preview", json={"condition": unseen}, headers=headers)
    assert r.json()["count"] == 0 and "refund" in r.json()["warnings"][0]

    r = client.post(
        "/api/v1/segments", json={"name": "复购宝妈", "condition": cond}, headers=headers
    )
    assert r.status_code == 201, r.text
    seg = r.json()
    assert (seg["size"], seg["version"], seg["kind"]) == (1, 1, "dynamic")

    members = client.get(f"/api/v1/segments/{seg['id']}/members", headers=headers).json()
    assert [m["external_id"] for m in members["items"]] == ["a"]
    assert members["items"][0]["source"] == "computed"

    # widen the condition: c and d... d has no tag, c visited -> drop the visit rule
    wider = {
        "type": "and",
        "conditions": [{"type": "tags", "match": "any", "tags": [vip]}, BOUGHT_TWICE],
    }
    r = client.patch(f"/api/v1/segments/{seg['id']}", json={"condition": wider}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["size"], r.json()["version"]) == (2, 2)

    hist = client.get(f"/api/v1/segments/{seg['id']}/history?limit=1", headers=headers).json()
    assert len(hist["items"]) == 1 and hist["next_cursor"]
    first = hist["items"][0]
    assert (first["external_id"], first["change"], first["cause"], first["version"]) == (
        "c",
        "entered",
        "condition_changed",
        2,
    )
    rest = client.get(
        f"/api/v1/segments/{seg['id']}/history",
        params={"cursor": hist["next_cursor"]},
        headers=headers,
    ).json()
    assert [(h["external_id"], h["cause"]) for h in rest["items"]] == [("a", "created")]

    # manual remove survives a rebuild; manual add of a non-matching contact too
    r = client.post(
        f"/api/v1/segments/{seg['id']}/members",
        json={"add": [ids["d"]], "remove": [ids["a"]]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/segments/{seg['id']}/build", headers=headers)
    assert r.json()["version"] == 3
    members = client.get(f"/api/v1/segments/{seg['id']}/members", headers=headers).json()
    assert sorted(m["external_id"] for m in members["items"]) == ["c", "d"]
    assert r.json()["size"] == 2

    sizes = client.get(f"/api/v1/segments/{seg['id']}/sizes?days=7", headers=headers).json()
    assert len(sizes["items"]) == 7 or sizes["items"][-1]["size"] == 2
    assert sizes["items"][-1]["size"] == 2

    # frozen copy: static, same members, does not move
    r = client.post(f"/api/v1/segments/{seg['id']}/freeze", json={"name": "快照"}, headers=headers)
    assert r.status_code == 201, r.text
    frozen = r.json()
    assert (frozen["kind"], frozen["size"], frozen["frozen_from_id"]) == ("static", 2, seg["id"])


def test_static_upload_and_bad_input(client: Any, runtime: Runtime) -> None:
    ws, headers, ids, _vip = _setup(runtime)
    r = client.post("/api/v1/segments", json={"name": "名单", "kind": "static"}, headers=headers)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    body = f"external_id\na\n{ids['b']}\nnobody\n".encode()
    r = client.post(
        f"/api/v1/segments/{sid}/upload",
        content=body,
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["entered"], r.json()["unknown_ids"]) == (2, ["nobody"])
    r = client.post(
        f"/api/v1/segments/{sid}/upload",
        content=b"nobody\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_contacts_matched"
    assert client.get(f"/api/v1/segments/{sid}", headers=headers).json()["size"] == 2

    def bad(cond: dict[str, Any], seg: str | None = None) -> dict[str, Any]:
        if seg:
            r = client.patch(f"/api/v1/segments/{seg}", json={"condition": cond}, headers=headers)
        else:
            r = client.post(
                "/api/v1/segments", json={"name": "x", "condition": cond}, headers=headers
            )
        assert r.status_code == 422, r.text
        return r.json()["error"]

    err = bad(
        {
            "type": "and",
            "conditions": [{"type": "attribute", "attribute": "shoe", "op": "eq", "value": 1}],
        }
    )
    assert err["details"]["path"] == "$.conditions[0].attribute"
    assert err["code"] == "unknown_attribute"
    err = bad({"type": "attribute", "attribute": "custom.city", "op": "eq", "value": "上海"})
    assert err["code"] == "unknown_attribute" and "define it first" in err["message"]
    err = bad({"type": "tags", "match": "any", "tags": ["tag_01NOSUCHTAG0000000000000000"]})
    assert err["details"]["path"] == "$.tags[0]"
    err = bad({"type": "event", "event": "purchase", "op": "about", "value": 1})
    assert err["details"]["path"] == "$.op"
    # self-reference, directly and through another segment
    one = client.post(
        "/api/v1/segments", json={"name": "one", "condition": BOUGHT_TWICE}, headers=headers
    ).json()["id"]
    two = client.post(
        "/api/v1/segments",
        json={"name": "two", "condition": {"type": "segment", "segment_id": one}},
        headers=headers,
    ).json()["id"]
    err = bad({"type": "segment", "segment_id": one}, seg=one)
    assert err["code"] == "segment_cycle"
    err = bad(
        {"type": "or", "conditions": [BOUGHT_TWICE, {"type": "segment", "segment_id": two}]},
        seg=one,
    )
    assert (err["code"], err["details"]["path"]) == ("segment_cycle", "$.conditions[1].segment_id")
    # nothing was written by the refused changes
    assert client.get(f"/api/v1/segments/{one}", headers=headers).json()["condition"] == (
        BOUGHT_TWICE
    )
    r = client.delete(f"/api/v1/segments/{one}", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "segment_in_use"
    r = client.post(
        "/api/v1/segments", json={"name": "one", "condition": BOUGHT_TWICE}, headers=headers
    )
    assert r.status_code == 409
    viewer = key(runtime, ws, "viewer")
    assert client.get("/api/v1/segments", headers=viewer).status_code == 403
    analyst = key(runtime, ws, "analyst")
    assert client.get("/api/v1/segments", headers=analyst).status_code == 200
    assert client.post(f"/api/v1/segments/{one}/build", headers=analyst).status_code == 403
    # another workspace sees nothing
    _ws2, other = workspace(runtime)
    assert client.get(f"/api/v1/segments/{one}", headers=other).status_code == 404


def test_bulk_tag_a_segment_and_profile_lists_segments(client: Any, runtime: Runtime) -> None:
    _ws, headers, ids, vip = _setup(runtime)
    cond = {"type": "tags", "match": "any", "tags": [vip]}
    sid = client.post(
        "/api/v1/segments", json={"name": "宝妈们", "condition": cond}, headers=headers
    ).json()["id"]
    # b is taken out by hand: not a member, not tagged, not listed on b's profile
    r = client.post(f"/api/v1/segments/{sid}/members", json={"remove": [ids["b"]]}, headers=headers)
    assert r.status_code == 200, r.text
    new_tag = client.post("/api/v1/tags", json={"name": "618 触达"}, headers=headers).json()["id"]
    r = client.post(
        "/api/v1/tags/bulk",
        json={"tag_ids": [new_tag], "segment_id": sid, "external_ids": ["d"]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"changed": 3, "contacts": 3}  # a, c (members) and d (named)
    tagged = client.get("/api/v1/contacts", params={"tag": new_tag}, headers=headers).json()
    assert sorted(c["external_id"] for c in tagged["items"]) == ["a", "c", "d"]

    profile = client.get(f"/api/v1/contacts/{ids['a']}", headers=headers).json()
    assert [(s["id"], s["name"], s["source"]) for s in profile["segments"]] == [
        (sid, "宝妈们", "computed")
    ]
    assert client.get(f"/api/v1/contacts/{ids['b']}", headers=headers).json()["segments"] == []

    r = client.post(
        "/api/v1/tags/bulk", json={"tag_ids": [new_tag], "segment_id": "seg_nope"}, headers=headers
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "segment_id"
