"""邀请入群 (invitations made): people placed through a member's invitation code, counted in the
metrics for the inviter's group, tier and community (from the member rows). SQLite and PG."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from community_helpers import PNG, WECHAT_UA

from liebian.kit.clock import utcnow


def test_invitations_are_counted_for_the_inviters_group(client: Any, owner: dict[str, str]) -> None:
    h = owner
    r = client.post(
        "/api/v1/communities",
        json={"name": "邀请群", "threshold": "invitation", "tiers": [{"key": "a", "name": "A"}]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    groups = [
        client.post(
            f"/api/v1/communities/{cid}/groups",
            json={"name": name, "tier": "a", "qr_image": PNG, "capacity": 2},
            headers=h,
        ).json()["id"]
        for name in ("A1 群", "A2 群")
    ]
    seed = client.post(
        f"/api/v1/community-groups/{groups[0]}/members", json={"external_id": "seed"}, headers=h
    ).json()
    code = seed["invite_code"]
    placed = []
    for n in range(2):  # A1 has one place left: the second invitee lands in A2
        page = client.post(
            f"/c/{cid}", data={"invite": code}, cookies={"lb_vid": f"visitor0000000000{n}"},
            headers={"user-agent": WECHAT_UA},
        )  # fmt: skip
        assert page.status_code == 200, page.text
        placed.append(page)
    refused = client.post(
        f"/c/{cid}", data={"invite": "nope-nope-no"}, cookies={"lb_vid": "visitor00000000009"},
        headers={"user-agent": WECHAT_UA},
    )  # fmt: skip
    assert refused.status_code != 200

    window = {"from": (utcnow() - timedelta(hours=1)).isoformat(),
              "to": (utcnow() + timedelta(hours=1)).isoformat()}  # fmt: skip

    def summary(by: str) -> dict[str, dict[str, Any]]:
        out = client.get(
            f"/api/v1/communities/{cid}/metrics", params={**window, "by": by}, headers=h
        ).json()
        return {r["key"]: r for r in out["summary"]}

    deadline = time.monotonic() + 20
    while set(summary("group")) != set(groups) and time.monotonic() < deadline:
        time.sleep(0.1)  # the group events reach the event store with the flusher
    by_group = summary("group")
    assert by_group[groups[0]]["invitations"] == 2  # both invitees: the inviter is in A1
    assert by_group[groups[1]]["invitations"] == 0
    assert summary("tier")["a"]["invitations"] == 2
    assert summary("community")[""]["invitations"] == 2
    # 成员 (members now): personal WeChat groups — showing the QR is the join — so the seed
    # and the first invitee in A1, the second in A2.
    assert [by_group[g]["members"] for g in groups] == [2, 1]
    assert summary("community")[""]["members"] == 3
    # Outside the window: none.
    later = {"from": (utcnow() + timedelta(hours=2)).isoformat(),
             "to": (utcnow() + timedelta(hours=3)).isoformat()}  # fmt: skip
    out = client.get(
        f"/api/v1/communities/{cid}/metrics", params={**later, "by": "community"}, headers=h
    ).json()
    assert all(r["invitations"] == 0 for r in out["summary"])
