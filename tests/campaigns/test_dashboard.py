"""The campaign dashboard API and the fission tree over real actions (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fission_helpers import INVITE, create, join

ONE_INVITE = {**INVITE, "new_users_only": False, "risk": {"mode": "allow"}}


def test_dashboard_and_tree(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "invite", ONE_INVITE)
    alice = join(client, owner, cid, "alice", channel="group", nickname="王小明").json()
    bob = join(
        client, owner, cid, "bob", referrer_code=alice["invite_code"], channel="group"
    ).json()
    join(client, owner, cid, "carol", referrer_code=bob["invite_code"], channel="group")
    join(client, owner, cid, "dave", referrer_code=alice["invite_code"], channel="group")
    erin = join(client, owner, cid, "erin", channel="moments").json()
    client.get(
        f"/api/v1/campaigns/{cid}/participants/{alice['participant_id']}/poster.png", headers=owner
    )
    runtime.flush_events()

    resp = client.get(f"/api/v1/campaigns/{cid}/dashboard", headers=owner)
    assert resp.status_code == 200, resp.text
    d = resp.json()
    t = d["totals"]
    assert (t["participants"], t["friend_joins"], t["friend_conversions"], t["sharers"]) == (
        5,
        3,
        3,
        1,
    )
    assert t["k_factor"] == 0.6 and t["share_rate"] == 0.2
    # alice: 5元券 for her 1st invite; bob: 5元券 for carol; 3 invitees × 新人券 10元.
    assert t["reward_cost"] == 500 + 500 + 3 * 1_000
    assert t["cac"] == round(t["reward_cost"] / 3) and t["roi"] == -1.0
    assert [s["label"] for s in d["funnel"]] == [
        "看到",
        "参与",
        "分享",
        "好友点击",
        "好友参与",
        "好友转化",
    ]
    assert [s["people"] for s in d["funnel"]] == [0, 5, 1, 0, 3, 3]
    channels = {c["channel"]: c for c in d["by_channel"]}
    assert channels["group"]["participants"] == 4 and channels["moments"]["participants"] == 1
    assert len(d["by_day"]) == 1 and d["by_day"][0]["participants"] == 5

    tree = client.get(f"/api/v1/campaigns/{cid}/tree", headers=owner).json()
    assert tree["participants"] == 5 and tree["max_depth"] == 3
    roots = [(n["external_id"], n["descendants"]) for n in tree["items"]]
    assert roots == [("alice", 3), ("erin", 0)]
    assert tree["widest"][0]["external_id"] == "alice" and tree["widest"][0]["children"] == 2
    assert tree["items"][0]["nickname"] != "王小明"  # masked
    kids = client.get(
        f"/api/v1/campaigns/{cid}/tree",
        params={"parent": alice["participant_id"], "limit": 1},
        headers=owner,
    ).json()
    assert [n["external_id"] for n in kids["items"]] == ["bob"] and kids["items"][0]["depth"] == 2
    assert kids["items"][0]["referral_status"] == "approved"
    more = client.get(
        f"/api/v1/campaigns/{cid}/tree",
        params={"parent": alice["participant_id"], "limit": 1, "cursor": kids["next_cursor"]},
        headers=owner,
    ).json()
    assert [n["external_id"] for n in more["items"]] == ["dave"] and more["next_cursor"] is None
    missing = client.get(f"/api/v1/campaigns/{cid}/tree", params={"parent": "par_x"}, headers=owner)
    assert missing.status_code == 404
    # The forest is reused between requests only while the participants are unchanged: a new
    # invitee shows at once.
    join(client, owner, cid, "frank", referrer_code=erin["invite_code"], channel="group")
    again = client.get(f"/api/v1/campaigns/{cid}/tree", headers=owner).json()
    assert again["participants"] == 6
    assert [(n["external_id"], n["descendants"]) for n in again["items"]] == [
        ("alice", 3),
        ("erin", 1),
    ]
