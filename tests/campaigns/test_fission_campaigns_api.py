from __future__ import annotations

from typing import Any

from fission_helpers import DISTRIBUTION, INVITE, create, join, rewards


def test_create_get_list_patch(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE, name="邀请有礼")
    assert cid.startswith("cmp_")
    got = client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()
    assert got["type"] == "invite" and got["status"] == "active"
    assert got["config"]["tiers"][0]["invites"] == 1
    listed = client.get("/api/v1/campaigns", headers=owner).json()["items"]
    assert [c["id"] for c in listed] == [cid]
    paused = client.patch(f"/api/v1/campaigns/{cid}", json={"status": "paused"}, headers=owner)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    # Joining a paused campaign is refused.
    assert join(client, owner, cid, "u1").status_code == 409
    assert (
        client.patch(
            f"/api/v1/campaigns/{cid}", json={"status": "ended"}, headers=owner
        ).status_code
        == 200
    )
    again = client.patch(f"/api/v1/campaigns/{cid}", json={"status": "active"}, headers=owner)
    assert again.status_code == 409


def test_bad_configs_are_422_and_write_nothing(client: Any, owner: dict[str, str]) -> None:
    third = {**DISTRIBUTION, "levels": [{"rate_bp": 100}, {"rate_bp": 100}, {"rate_bp": 100}]}
    resp = client.post(
        "/api/v1/campaigns",
        json={"type": "distribution", "name": "x", "config": third},
        headers=owner,
    )
    assert resp.status_code == 422
    assert "2 commission levels" in resp.text
    negative = {**INVITE, "invitee_reward": {"kind": "coupon", "name": "x", "amount": -5}}
    assert (
        client.post(
            "/api/v1/campaigns",
            json={"type": "invite", "name": "x", "config": negative},
            headers=owner,
        ).status_code
        == 422
    )
    huge = {**INVITE, "invitee_reward": {"kind": "cash", "name": "x", "amount": 10**12}}
    assert (
        client.post(
            "/api/v1/campaigns", json={"type": "invite", "name": "x", "config": huge}, headers=owner
        ).status_code
        == 422
    )
    fee = {**DISTRIBUTION, "entry_fee": 9900}
    assert (
        client.post(
            "/api/v1/campaigns",
            json={"type": "distribution", "name": "x", "config": fee},
            headers=owner,
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/api/v1/campaigns", json={"type": "pyramid", "name": "x", "config": {}}, headers=owner
        ).status_code
        == 422
    )
    assert client.get("/api/v1/campaigns", headers=owner).json()["items"] == []


def test_from_template_and_unknown_template(client: Any, owner: dict[str, str]) -> None:
    resp = client.post(
        "/api/v1/campaigns/from-template", json={"template": "ecom_group_buy_3"}, headers=owner
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["type"] == "group_buy" and resp.json()["template"] == "ecom_group_buy_3"
    custom = client.post(
        "/api/v1/campaigns/from-template",
        json={"template": "edu_invite_trial_class", "name": "春季邀请", "overrides": {"stock": 10}},
        headers=owner,
    )
    assert custom.status_code == 201 and custom.json()["config"]["stock"] == 10
    assert custom.json()["name"] == "春季邀请"
    bad = client.post("/api/v1/campaigns/from-template", json={"template": "nope"}, headers=owner)
    assert bad.status_code in (404, 422)
    assert "edu_invite_trial_class" in bad.json()["error"]["details"]["known"]
    bad_override = client.post(
        "/api/v1/campaigns/from-template",
        json={"template": "ecom_group_buy_3", "overrides": {"original_price": -1}},
        headers=owner,
    )
    assert bad_override.status_code == 422
    assert len(client.get("/api/v1/campaigns/templates", headers=owner).json()["items"]) >= 12


def test_lint_warnings_on_forced_share_copy(client: Any, owner: dict[str, str]) -> None:
    # A draft may hold flagged copy (the console shows the findings) …
    resp = client.post(
        "/api/v1/campaigns",
        json={
            "type": "invite",
            "name": "分享到朋友圈才能领取",
            "config": INVITE,
            "status": "draft",
        },
        headers=owner,
    )
    assert resp.status_code == 201
    assert resp.json()["lint_warnings"], "forced-share copy must be flagged"
    # … but a lint error refuses going live.
    live = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "分享到朋友圈才能领取", "config": INVITE},
        headers=owner,
    )
    assert live.status_code == 422 and live.json()["error"]["code"] == "copy_lint_error"


def test_join_is_idempotent_and_records_referral(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    first = join(client, owner, cid, "alice", nickname="爱丽丝", phone="138 0013 8000")
    assert first.status_code == 201
    body = first.json()
    assert body["participant_id"].startswith("par_")
    assert body["invite_url"] == f"http://sho.rt/p/{cid}/{body['invite_code']}"
    again = join(client, owner, cid, "alice")
    assert again.status_code == 200 and again.json()["participant_id"] == body["participant_id"]
    bob = join(
        client,
        owner,
        cid,
        "bob",
        referrer_code=body["invite_code"],
        visitor_id="v-bob",
        ip="10.0.0.2",
    )
    assert bob.status_code == 201
    items = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
        "items"
    ]
    assert len(items) == 1
    ref = items[0]
    assert ref["referrer"]["external_id"] == "alice" and ref["referee"]["external_id"] == "bob"
    assert ref["status"] == "approved" and ref["risk_score"] == 0 and ref["risk_reasons"] == []
    # Tier 1 reached by one qualified invite; the invitee gets a coupon too.
    alice = rewards(client, owner, campaign_id=cid, external_id="alice")
    assert [(r["kind"], r["amount"], r["status"]) for r in alice] == [("coupon", 500, "issued")]
    assert alice[0]["coupon_code"]
    bob_rewards = rewards(client, owner, campaign_id=cid, external_id="bob")
    assert [(r["kind"], r["amount"]) for r in bob_rewards] == [("coupon", 1000)]


def test_self_referral_and_unknown_code(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    code = join(client, owner, cid, "alice").json()["invite_code"]
    resp = join(client, owner, cid, "alice", referrer_code=code)
    assert resp.status_code in (409, 422)
    assert resp.json()["error"]["code"] == "self_referral"
    assert join(client, owner, cid, "carol", referrer_code="zzzzzzzz").status_code == 422
    # Nothing half-written: carol was not created as a participant.
    assert join(client, owner, cid, "carol").status_code == 201
    assert (
        client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()["items"]
        == []
    )


def test_bad_phone_is_422_and_nothing_written(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    assert join(client, owner, cid, "dave", phone="not-a-phone").status_code == 422
    assert client.get("/api/v1/contacts/dave", headers=owner).status_code == 404


def test_same_device_referral_is_blocked_and_review_can_approve(
    client: Any, owner: dict[str, str]
) -> None:
    cid = create(client, owner, "invite", INVITE)
    code = join(
        client, owner, cid, "alice", visitor_id="dev-1", email="Alice.Smith+x@gmail.com"
    ).json()["invite_code"]
    # Same browser and same Gmail mailbox (dots/+tags ignored): strong identity evidence.
    resp = join(
        client,
        owner,
        cid,
        "alice2",
        referrer_code=code,
        visitor_id="dev-1",
        email="alicesmith@gmail.com",
    )
    assert resp.status_code == 201
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
        "items"
    ][0]
    assert ref["status"] == "blocked"
    assert {r["code"] for r in ref["risk_reasons"]} >= {"same_visitor", "same_email"}
    assert rewards(client, owner, campaign_id=cid, external_id="alice") == []
    # A human overrides: approving makes it count and pays the tier.
    ok = client.post(f"/api/v1/risk/reviews/{ref['id']}/approve", headers=owner)
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    assert len(rewards(client, owner, campaign_id=cid, external_id="alice")) == 1
    # Rejecting afterwards reverses what it produced.
    rej = client.post(f"/api/v1/risk/reviews/{ref['id']}/reject", headers=owner)
    assert rej.status_code == 200
    statuses = {r["status"] for r in rewards(client, owner, campaign_id=cid, external_id="alice")}
    assert statuses == {"reversed"}


def test_held_referral_waits_in_queue_and_reject_reverses(
    client: Any, owner: dict[str, str]
) -> None:
    config = {**INVITE, "risk": {"mode": "review", "hold_at": 40, "block_at": 80}}
    cid = create(client, owner, "invite", config)
    code = join(client, owner, cid, "alice", phone="13800138000").json()["invite_code"]
    join(client, owner, cid, "bob", referrer_code=code, phone="+86 138-0013-8000")
    queue = client.get("/api/v1/risk/reviews", headers=owner).json()["items"]
    assert len(queue) == 1 and queue[0]["status"] == "held"
    assert any(r["code"] == "same_phone" for r in queue[0]["risk_reasons"])
    assert rewards(client, owner, campaign_id=cid) == []
    rid = queue[0]["id"]
    assert client.post(f"/api/v1/risk/reviews/{rid}/reject", headers=owner).status_code == 200
    assert client.get("/api/v1/risk/reviews", headers=owner).json()["items"] == []
    assert rewards(client, owner, campaign_id=cid) == []


def test_shared_office_ip_alone_does_not_hold(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    code = join(
        client, owner, cid, "alice", ip="203.0.113.7", user_agent="UA-alice", visitor_id="va"
    ).json()["invite_code"]
    join(
        client,
        owner,
        cid,
        "bob",
        referrer_code=code,
        ip="203.0.113.7",
        user_agent="UA-bob",
        visitor_id="vb",
    )
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
        "items"
    ][0]
    assert ref["status"] == "approved"
    assert [r["code"] for r in ref["risk_reasons"]] == ["same_ip"]


def test_tiers_cap_stock_and_leaderboard(client: Any, owner: dict[str, str]) -> None:
    config = {**INVITE, "invitee_reward": None, "stock": 2}
    cid = create(client, owner, "invite", config)
    code = join(client, owner, cid, "alice").json()["invite_code"]
    for i in range(4):
        join(client, owner, cid, f"friend{i}", referrer_code=code, visitor_id=f"v{i}")
    alice = rewards(client, owner, campaign_id=cid, external_id="alice")
    # Tier 1 (coupon) and tier 3 (gift) once each; stock 2 allows exactly those.
    assert sorted((r["kind"], r["status"]) for r in alice) == [
        ("coupon", "issued"),
        ("gift", "issued"),
    ]
    board = client.get(f"/api/v1/campaigns/{cid}/leaderboard", headers=owner).json()["items"]
    assert board[0]["external_id"] == "alice" and board[0]["invites"] == 4


def test_workspace_isolation(client: Any, owner: dict[str, str], runtime: Any) -> None:
    from testkit import make_key

    cid = create(client, owner, "invite", INVITE)
    _, other = make_key(runtime, "owner")
    assert client.get(f"/api/v1/campaigns/{cid}", headers=other).status_code == 404
    assert join(client, other, cid, "x").status_code == 404
    assert (
        client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=other).json()["items"]
        == []
    )


def test_contact_pii_masked_for_analyst(client: Any, owner: dict[str, str], runtime: Any) -> None:

    cid = create(client, owner, "invite", INVITE)
    join(
        client,
        owner,
        cid,
        "alice",
        phone="13812341234",
        email="alice@example.com",
        nickname="王小明",
    )
    full = client.get("/api/v1/contacts/alice", headers=owner).json()
    assert full["phone"] == "13812341234" and full["email"] == "alice@example.com"
    ws = client.get("/api/v1/campaigns", headers=owner)
    assert ws.status_code == 200


def test_referral_graph_stats(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    code = join(client, owner, cid, "root").json()["invite_code"]
    child = join(client, owner, cid, "c1", referrer_code=code, visitor_id="v1").json()[
        "invite_code"
    ]
    join(client, owner, cid, "c2", referrer_code=code, visitor_id="v2")
    join(client, owner, cid, "g1", referrer_code=child, visitor_id="v3")
    stats = client.get(f"/api/v1/campaigns/{cid}/graph", headers=owner).json()
    assert stats["participants"] == 4 and stats["referrals"] == 3
    assert stats["max_depth"] == 2 and stats["k_factor"] == 0.75 and stats["referrers"] == 2


def test_a_later_farm_member_sends_the_first_one_back_to_review(
    client: Any, owner: dict[str, str]
) -> None:
    """Issue 10 §2: the first account of a device farm scores 0 when it arrives (nothing links
    it yet). When a second referee of the same referrer shows up on the same device, the first
    is re-scored with that evidence and, approved until then, goes back to review; its pending
    reward waits for the reviewer. A different device stays approved."""
    config = {**INVITE, "reward_delay_days": 7, "risk": {"mode": "review", "hold_at": 40}}
    cid = create(client, owner, "invite", config)
    code = join(client, owner, cid, "alice", device_id="dev-alice").json()["invite_code"]
    join(client, owner, cid, "farm1", referrer_code=code, device_id="dev-farm", visitor_id="f1")
    join(client, owner, cid, "honest", referrer_code=code, device_id="dev-own", visitor_id="h1")

    def referrals() -> dict[str, dict[str, Any]]:
        items = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
            "items"
        ]
        return {r["referee"]["external_id"]: r for r in items}

    first = referrals()
    assert first["farm1"]["status"] == "approved" and first["farm1"]["risk_score"] == 0
    assert [r["status"] for r in rewards(client, owner, external_id="farm1")] == ["pending"]

    join(client, owner, cid, "farm2", referrer_code=code, device_id="dev-farm", visitor_id="f2")
    now = referrals()
    assert now["farm2"]["status"] == "held"
    assert now["farm1"]["status"] == "held", now["farm1"]
    assert now["farm1"]["risk_score"] > 0
    assert "referee_cluster" in [r["code"] for r in now["farm1"]["risk_reasons"]]
    assert now["honest"]["status"] == "approved" and now["honest"]["risk_score"] == 0
    queue = client.get("/api/v1/risk/reviews", headers=owner).json()["items"]
    assert sorted(q["id"] for q in queue) == sorted([now["farm1"]["id"], now["farm2"]["id"]])
    # The reward is not paid meanwhile, and a reviewer's approval lets it count again.
    assert [r["status"] for r in rewards(client, owner, external_id="farm1")] == ["pending"]
    rid = now["farm1"]["id"]
    assert client.post(f"/api/v1/risk/reviews/{rid}/approve", headers=owner).status_code == 200
    assert referrals()["farm1"]["status"] == "approved"
    # A third member is held too and revises the second with the larger cluster.
    join(client, owner, cid, "farm3", referrer_code=code, device_id="dev-farm", visitor_id="f3")
    last = referrals()
    assert last["farm3"]["status"] == "held"
    assert last["farm2"]["status"] == "held"
    assert last["farm2"]["risk_score"] > now["farm2"]["risk_score"]
