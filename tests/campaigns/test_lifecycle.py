"""A running campaign's lifecycle: versioned rules, pause/resume/end/extend/stock, duplicate,
the change log and the copy lint gate — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fission_helpers import INVITE, create, join, rewards

ONE_TIER = {
    "tiers": [{"invites": 1, "reward": {"kind": "cash", "name": "现金", "amount": 1_000}}],
    "qualifying_action": "signup",
    "new_users_only": False,
    "max_rewards_per_participant": 3,
    "risk": {"mode": "allow"},
}


def _patch(client: Any, owner: dict[str, str], cid: str, **body: Any) -> Any:
    return client.patch(f"/api/v1/campaigns/{cid}", json=body, headers=owner)


def test_lower_reward_applies_to_new_joiners_only(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", ONE_TIER)
    alice = join(client, owner, cid, "alice").json()
    lower = {
        **ONE_TIER,
        "tiers": [{"invites": 1, "reward": {"kind": "cash", "name": "现金", "amount": 300}}],
    }
    changed = _patch(client, owner, cid, config=lower)
    assert changed.status_code == 200, changed.text
    assert changed.json()["config_version"] == 2
    bob = join(client, owner, cid, "bob").json()
    # alice joined under v1 (1000 分 an invite), bob under v2 (300 分).
    join(client, owner, cid, "carol", referrer_code=alice["invite_code"])
    join(client, owner, cid, "dave", referrer_code=bob["invite_code"])
    paid = {r["external_id"]: r["amount"] for r in rewards(client, owner, campaign_id=cid)}
    assert paid == {"alice": 1_000, "bob": 300}
    log = client.get(f"/api/v1/campaigns/{cid}/changes", headers=owner).json()["items"]
    assert [c["action"] for c in log] == ["edit", "create"]
    assert log[0]["config_version"] == 2
    assert log[0]["before"]["tiers"][0]["reward"]["amount"] == 1_000
    assert log[0]["after"]["tiers"][0]["reward"]["amount"] == 300


def test_decreasing_rewards_per_cycle(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", {**ONE_TIER, "cycle_decrease_bp": 5_000})
    alice = join(client, owner, cid, "alice").json()
    for friend in ("f1", "f2", "f3"):
        assert (
            join(client, owner, cid, friend, referrer_code=alice["invite_code"]).status_code == 201
        )
    amounts = sorted(r["amount"] for r in rewards(client, owner, campaign_id=cid))
    assert amounts == [250, 500, 1_000]


def test_pause_resume_end_extend_and_stock(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", {**INVITE, "stock": 10})
    base = f"/api/v1/campaigns/{cid}"
    assert client.post(f"{base}/pause", headers=owner).json()["status"] == "paused"
    refused = join(client, owner, cid, "u1")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "campaign_not_active"
    assert client.post(f"{base}/pause", headers=owner).status_code == 409
    assert client.post(f"{base}/resume", headers=owner).json()["status"] == "active"
    assert join(client, owner, cid, "u1").status_code == 201
    ends = datetime.fromisoformat(client.get(base, headers=owner).json()["ends_at"])
    later = (ends + timedelta(days=7)).isoformat()
    extended = client.post(f"{base}/extend", json={"ends_at": later}, headers=owner)
    assert extended.status_code == 200
    assert datetime.fromisoformat(extended.json()["ends_at"]) == ends + timedelta(days=7)
    earlier = client.post(f"{base}/extend", json={"ends_at": ends.isoformat()}, headers=owner)
    assert earlier.status_code == 422 and earlier.json()["error"]["details"]["field"] == "ends_at"
    stocked = client.post(f"{base}/stock", json={"units": 5}, headers=owner)
    assert stocked.json()["config"]["stock"] == 15
    assert client.post(f"{base}/stock", json={"units": 0}, headers=owner).status_code == 422
    ended = client.post(f"{base}/end", headers=owner)
    assert ended.json()["status"] == "ended"
    assert datetime.fromisoformat(ended.json()["ends_at"]) <= datetime.now(UTC)
    assert client.post(f"{base}/resume", headers=owner).status_code == 409
    assert client.post(f"{base}/extend", json={"ends_at": later}, headers=owner).status_code == 409
    assert join(client, owner, cid, "u2").status_code == 409
    actions = [c["action"] for c in client.get(f"{base}/changes", headers=owner).json()["items"]]
    assert actions == ["end", "add_stock", "extend", "resume", "pause", "create"]


def test_no_stock_limit_cannot_take_more(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    resp = client.post(f"/api/v1/campaigns/{cid}/stock", json={"units": 5}, headers=owner)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "stock_unlimited"


def test_lint_error_blocks_launch_and_live_edits(client: Any, owner: dict[str, str]) -> None:
    draft = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "春季邀请", "config": INVITE, "status": "draft",
              "share_text": "转发到三个微信群即可领取"},
        headers=owner,
    ).json()  # fmt: skip
    cid = draft["id"]
    refused = client.post(f"/api/v1/campaigns/{cid}/launch", headers=owner)
    assert refused.status_code == 422
    err = refused.json()["error"]
    assert err["code"] == "copy_lint_error" and err["details"][0]["field"] == "share_text"
    assert client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()["status"] == "draft"
    # A warning (urgency wording) does not block.
    fixed = _patch(client, owner, cid, share_text="邀请好友注册，双方各得奖励，速看")
    assert fixed.status_code == 200
    assert [w["severity"] for w in fixed.json()["lint_warnings"]] == ["warning"]
    launched = client.post(f"/api/v1/campaigns/{cid}/launch", headers=owner)
    assert launched.status_code == 200 and launched.json()["status"] == "active"
    # Editing a live campaign's copy into a lint error is refused and writes nothing.
    bad = _patch(client, owner, cid, share_text="分享后才能领取", name="新名字")
    assert bad.status_code == 422
    after = client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()
    assert after["name"] == "春季邀请" and after["share_text"].startswith("邀请好友")


def test_scheduled_launch_refuses_early_joins(client: Any, owner: dict[str, str]) -> None:
    cid = client.post(
        "/api/v1/campaigns",
        json={"type": "invite", "name": "周三秒杀", "config": INVITE, "status": "draft"},
        headers=owner,
    ).json()["id"]
    start = datetime.now(UTC) + timedelta(days=2)
    resp = client.post(
        f"/api/v1/campaigns/{cid}/launch", json={"starts_at": start.isoformat()}, headers=owner
    )
    assert resp.status_code == 200
    assert datetime.fromisoformat(resp.json()["starts_at"]) == start
    early = join(client, owner, cid, "u1")
    assert early.status_code == 409 and early.json()["error"]["code"] == "campaign_not_started"


def test_bad_config_change_is_422_and_changes_nothing(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", {**INVITE, "stock": 10})
    bad = _patch(client, owner, cid, config={**INVITE, "tiers": []})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "config.tiers"
    got = client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()
    assert got["config_version"] == 1 and got["config"]["stock"] == 10
    assert [
        c["action"]
        for c in client.get(f"/api/v1/campaigns/{cid}/changes", headers=owner).json()["items"]
    ] == ["create"]


def test_duplicate_is_a_fresh_draft(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", {**INVITE, "stock": 10}, name="原活动")
    join(client, owner, cid, "u1")
    dup = client.post(f"/api/v1/campaigns/{cid}/duplicate", headers=owner)
    assert dup.status_code == 201
    body = dup.json()
    assert body["id"] != cid and body["status"] == "draft" and body["name"] == "原活动 副本"
    assert body["config"] == client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()["config"]
    assert body["stock_used"] == 0
    other = client.post(
        f"/api/v1/campaigns/{cid}/duplicate", json={"name": "第二期"}, headers=owner
    )
    assert other.json()["name"] == "第二期"


def test_viewer_cannot_change_a_campaign(client: Any, owner: dict[str, str]) -> None:
    cid = create(client, owner, "invite", INVITE)
    key = client.post("/api/v1/keys", json={"name": "v", "role": "viewer"}, headers=owner)
    viewer = {"Authorization": f"Bearer {key.json()['key']}"}
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=viewer).status_code == 403
    assert client.get(f"/api/v1/campaigns/{cid}", headers=owner).json()["status"] == "active"
