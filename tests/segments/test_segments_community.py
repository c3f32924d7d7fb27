"""Community membership in the condition language, end to end: joins and leaves recorded
through the communities API move a segment's members (the keeper follows the group_* events),
the builder's vocabulary lists communities with tiers and groups, and a condition naming an
unknown community, group or tier is refused with its path and nothing is written."""

from __future__ import annotations

import time
from typing import Any

from liebian.app.runtime import Runtime

from .helpers import key, workspace


def _wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _members(client: Any, headers: dict[str, str], sid: str) -> list[str]:
    r = client.get(f"/api/v1/segments/{sid}/members", headers=headers)
    return sorted(m["external_id"] for m in r.json()["items"])


def _community(client: Any, headers: dict[str, str]) -> tuple[str, str, str]:
    r = client.post(
        "/api/v1/communities",
        json={
            "name": "宝妈福利群",
            "kind": "welfare",
            "tiers": [{"key": "baby", "name": "0-1岁"}, {"key": "toddler", "name": "1-3岁"}],
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    groups = []
    for name, tier in (("0-1岁 1群", "baby"), ("1-3岁 1群", "toddler")):
        g = client.post(
            f"/api/v1/communities/{cid}/groups",
            json={"name": name, "tier": tier},
            headers=headers,
        )
        assert g.status_code == 201, g.text
        groups.append(g.json()["id"])
    return cid, groups[0], groups[1]


def test_joins_and_leaves_move_membership(client: Any, runtime: Runtime) -> None:
    ws, headers = workspace(runtime)
    cid, baby, toddler = _community(client, headers)

    def record(group: str, ext: str, event: str = "joined") -> None:
        r = client.post(
            f"/api/v1/community-groups/{group}/members",
            json={"external_id": ext, "event": event},
            headers=headers,
        )
        assert r.status_code == 200, r.text

    record(baby, "mom")  # before the segment exists: the first build finds her
    in_now = {"type": "community", "community_id": cid, "status": "joined", "within_last_days": 7}
    sid = client.post(
        "/api/v1/segments", json={"name": "新入群", "condition": in_now}, headers=headers
    ).json()["id"]
    assert _members(client, headers, sid) == ["mom"]
    baby_left = {"type": "community", "community_id": cid, "tier": "baby", "status": "left"}
    left_sid = client.post(
        "/api/v1/segments", json={"name": "退群", "condition": baby_left}, headers=headers
    ).json()["id"]
    assert _members(client, headers, left_sid) == []

    record(toddler, "dad")  # the keeper follows the group_joined event
    runtime.flush_events()
    assert _wait_for(lambda: _members(client, headers, sid) == ["dad", "mom"])
    record(baby, "mom", "left")
    runtime.flush_events()
    assert _wait_for(lambda: _members(client, headers, sid) == ["dad"])
    assert _wait_for(lambda: _members(client, headers, left_sid) == ["mom"])
    hist = client.get(f"/api/v1/segments/{sid}/history", headers=headers).json()["items"]
    assert (hist[0]["external_id"], hist[0]["change"], hist[0]["cause"]) == (
        "mom",
        "exited",
        "event:group_left",
    )

    # the contacts list (and its CSV export) filter by community the same way
    def listed(**params: str) -> list[str]:
        r = client.get("/api/v1/contacts", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return sorted(c["external_id"] for c in r.json()["items"])

    assert listed(community=cid) == ["dad"]
    assert listed(community=cid, community_status="left") == ["mom"]
    assert listed(community=cid, community_status="any") == ["dad", "mom"]
    analyst = key(runtime, ws, "analyst")  # may not see PII: no step-up for the export
    csv = client.get("/api/v1/contacts/export.csv", params={"community": cid}, headers=analyst).text
    assert "dad" in csv and "mom" not in csv
    r = client.get("/api/v1/contacts", params={"community": "cmy_nope"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "community"
    r = client.get(
        "/api/v1/contacts", params={"community": cid, "community_status": "x"}, headers=headers
    )
    assert r.status_code == 422

    # preview answers the same, and "not in any community" leaves both out
    r = client.post(
        "/api/v1/segments/preview",
        json={"condition": {"type": "not", "condition": {"type": "community", "status": "any"}}},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 0


def test_vocabulary_lists_communities(client: Any, runtime: Runtime) -> None:
    _ws, headers = workspace(runtime)
    cid, baby, toddler = _community(client, headers)
    vocab = client.get("/api/v1/segments/vocabulary", headers=headers).json()
    (community,) = vocab["communities"]
    assert community["id"] == cid and community["name"] == "宝妈福利群"
    assert community["tiers"] == [
        {"key": "baby", "name": "0-1岁"},
        {"key": "toddler", "name": "1-3岁"},
    ]
    assert sorted(g["id"] for g in community["groups"]) == sorted([baby, toddler])


def test_bad_community_conditions_name_the_field(client: Any, runtime: Runtime) -> None:
    _ws, headers = workspace(runtime)
    cid, baby, _toddler = _community(client, headers)
    _other_ws, other_headers = workspace(runtime)
    foreign, foreign_group, _ = _community(client, other_headers)
    cases = [
        ({"type": "community", "community_id": foreign}, "$.community_id", "unknown_community"),
        (
            {"type": "community", "community_id": cid, "group_id": foreign_group},
            "$.group_id",
            "unknown_group",
        ),
        ({"type": "community", "community_id": cid, "tier": "teen"}, "$.tier", "unknown_tier"),
        ({"type": "community", "tier": "baby"}, "$.community_id", "invalid_condition"),
        ({"type": "community", "status": "kicked"}, "$.status", "unknown_operator"),
        (
            {"type": "community", "status": "joined", "within_last_days": 0},
            "$.within_last_days",
            "invalid_condition",
        ),
        ({"type": "community", "group": baby}, "$.group", "unknown_field"),
    ]
    for cond, path, code in cases:
        r = client.post(
            "/api/v1/segments", json={"name": "坏条件", "condition": cond}, headers=headers
        )
        assert r.status_code == 422, (cond, r.text)
        err = r.json()["error"]
        assert (err["details"]["path"], err["code"]) == (path, code), (cond, err)
        r = client.post("/api/v1/segments/preview", json={"condition": cond}, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["details"]["path"] == path
    assert (
        "teen"
        in client.post(
            "/api/v1/segments/preview",
            json={"condition": cases[2][0]},
            headers=headers,
        ).json()["error"]["message"]
    )
    # nothing was written
    assert client.get("/api/v1/segments", headers=headers).json()["items"] == []
