"""Invariants under real concurrency: many threads against a live HTTP server."""

from __future__ import annotations

from typing import Any

import httpx
from fission_helpers import ASSIST_UNLOCK, BARGAIN, GROUP_BUY, hammer, post_json


def _campaign(server: str, owner: dict[str, str], type_: str, config: dict[str, Any]) -> str:
    resp = post_json(
        f"{server}/api/v1/campaigns", owner, {"type": type_, "name": "并发", "config": config}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_group_never_overfills(server: str, owner: dict[str, str]) -> None:
    cid = _campaign(server, owner, "group_buy", GROUP_BUY)
    group = post_json(
        f"{server}/api/v1/campaigns/{cid}/groups", owner, {"leader_external_id": "leader"}
    ).json()
    gid = group["group_id"]
    # The leader holds one of the 5 seats; 30 people race for the other 4.
    results = hammer(
        30,
        lambda i: post_json(f"{server}/api/v1/groups/{gid}/join", owner, {"external_id": f"u{i}"}),
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 4, codes
    assert codes.count(409) == 26, codes
    with httpx.Client() as http:
        final = http.get(f"{server}/api/v1/groups/{gid}", headers=owner).json()
    assert final["status"] == "success"
    assert len(final["members"]) == final["size"] == 5
    assert len({m["seat"] for m in final["members"]}) == 5
    conflicts = {r.json()["error"]["code"] for r in results if r.status_code == 409}
    assert conflicts <= {"group_full", "group_success"}


def test_same_helper_helps_once(server: str, owner: dict[str, str]) -> None:
    cid = _campaign(server, owner, "assist", ASSIST_UNLOCK)
    aid = post_json(
        f"{server}/api/v1/campaigns/{cid}/assists", owner, {"external_id": "owner"}
    ).json()["assist_id"]
    results = hammer(
        20,
        lambda i: post_json(
            f"{server}/api/v1/assists/{aid}/help", owner, {"external_id": "helper"}
        ),
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and codes.count(409) == 19, codes
    with httpx.Client() as http:
        final = http.get(f"{server}/api/v1/assists/{aid}", headers=owner).json()
    assert final["helpers_count"] == 1 and len(final["helpers"]) == 1


def test_bargain_reaches_floor_exactly_under_concurrency(
    server: str, owner: dict[str, str]
) -> None:
    cid = _campaign(server, owner, "assist", BARGAIN)
    aid = post_json(
        f"{server}/api/v1/campaigns/{cid}/assists", owner, {"external_id": "owner"}
    ).json()["assist_id"]
    results = hammer(
        12,
        lambda i: post_json(f"{server}/api/v1/assists/{aid}/help", owner, {"external_id": f"h{i}"}),
    )
    assert sum(r.status_code == 200 for r in results) == 5
    assert all(r.status_code in (200, 409) for r in results)
    with httpx.Client() as http:
        final = http.get(f"{server}/api/v1/assists/{aid}", headers=owner).json()
    assert final["price_now"] == 100 and final["unlocked"] is True
    assert sum(h["cut"] for h in final["helpers"]) == 10_000 - 100
    assert sorted(h["index"] for h in final["helpers"]) == [0, 1, 2, 3, 4]


def test_duplicate_reward_issue_calls_issue_once(server: str, owner: dict[str, str]) -> None:
    body = {"external_id": "winner", "kind": "cash", "amount": 888, "status": "issued"}
    headers = {**owner, "Idempotency-Key": "callback-42"}
    results = hammer(20, lambda i: post_json(f"{server}/api/v1/rewards", headers, body))
    assert all(r.status_code in (200, 201) for r in results), [r.text for r in results]
    assert sum(r.status_code == 201 for r in results) == 1
    assert len({r.json()["id"] for r in results}) == 1
    with httpx.Client() as http:
        items = http.get(
            f"{server}/api/v1/rewards", params={"external_id": "winner"}, headers=owner
        ).json()["items"]
    assert len(items) == 1 and items[0]["status"] == "issued"


def test_concurrent_issue_transitions_once(server: str, owner: dict[str, str]) -> None:
    created = post_json(
        f"{server}/api/v1/rewards", {**owner, "Idempotency-Key": "k1"},
        {"external_id": "w", "kind": "coupon", "amount": 500},
    ).json()  # fmt: skip
    rid = created["id"]
    results = hammer(20, lambda i: post_json(f"{server}/api/v1/rewards/{rid}/issue", owner, {}))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sum(r.json()["changed"] for r in results) == 1
    assert len({r.json()["issued_at"] for r in results}) == 1
