"""Decreasing rewards (递减奖励) as a first-class option: a template that uses it, and its
cycles paying less each time once the campaign runs (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fission_helpers import join, rewards


def test_decreasing_template_pays_less_each_cycle(client: Any, owner: dict[str, str]) -> None:
    made = client.post(
        "/api/v1/campaigns/from-template",
        json={"template": "ecom_referral_decreasing"},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert campaign["config"]["cycle_decrease_bp"] == 2_000
    assert not [w for w in campaign["lint_warnings"] if w["severity"] == "error"]
    # Count sign-ups rather than first orders, so the test needs no shop.
    config = {**campaign["config"], "qualifying_action": "signup", "new_users_only": False,
              "risk": {"mode": "allow"}, "reward_delay_days": 0}  # fmt: skip
    cid = campaign["id"]
    assert (
        client.patch(f"/api/v1/campaigns/{cid}", json={"config": config}, headers=owner).status_code
        == 200
    )
    alice = join(client, owner, cid, "alice").json()
    for friend in ("f1", "f2", "f3"):
        join(client, owner, cid, friend, referrer_code=alice["invite_code"])
    paid = sorted(
        (
            r["amount"]
            for r in rewards(client, owner, campaign_id=cid)
            if r["external_id"] == "alice"
        ),
        reverse=True,
    )
    assert paid == [1_000, 800, 640]
