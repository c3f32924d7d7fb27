"""The campaign page's lists: participants (search by external id, how they came in, their
direct invites) and group-buy groups in progress (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fission_helpers import GROUP_BUY, INVITE, create, join

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}


def test_participants_search_and_status(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    alice = join(client, owner, cid, "alice", nickname="王小明").json()
    join(client, owner, cid, "bob", referrer_code=alice["invite_code"])
    join(client, owner, cid, "al_x", referrer_code=alice["invite_code"])
    url = f"/api/v1/campaigns/{cid}/participant-list"
    everyone = client.get(url, headers=owner).json()["items"]
    assert {p["external_id"] for p in everyone} == {"alice", "bob", "al_x"}
    by_id = {p["external_id"]: p for p in everyone}
    assert by_id["alice"]["invites"] == 2 and by_id["alice"]["status"] == "direct"
    assert by_id["alice"]["nickname"] == "王**"
    assert by_id["bob"]["status"] == "approved"
    assert [p["external_id"] for p in client.get(url + "?q=al", headers=owner).json()["items"]] in (
        ["al_x", "alice"], ["alice", "al_x"])  # fmt: skip
    # LIKE wildcards are taken literally.
    assert [
        p["external_id"] for p in client.get(url + "?q=al_", headers=owner).json()["items"]
    ] == ["al_x"]
    assert [
        p["external_id"] for p in client.get(url + "?status=direct", headers=owner).json()["items"]
    ] == ["alice"]
    page = client.get(url + "?limit=2", headers=owner).json()
    rest = client.get(url + f"?limit=2&cursor={page['next_cursor']}", headers=owner).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert client.get(url + "?cursor=x", headers=owner).status_code == 422


def test_groups_in_progress(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "group_buy", GROUP_BUY)
    opened = client.post(
        f"/api/v1/campaigns/{cid}/groups", json={"leader_external_id": "lead"}, headers=owner
    )
    assert opened.status_code == 201, opened.text
    listed = client.get(f"/api/v1/campaigns/{cid}/activities", headers=owner).json()["items"]
    assert len(listed) == 1
    row = listed[0]
    assert (row["kind"], row["owner"], row["status"], row["done"], row["needed"]) == (
        "group", "lead", "open", 1, 5)  # fmt: skip
    assert (
        client.get(f"/api/v1/campaigns/{cid}/activities?status=success", headers=owner).json()[
            "items"
        ]
        == []
    )
