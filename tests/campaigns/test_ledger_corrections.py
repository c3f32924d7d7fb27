"""Ledger corrections: refunds un-qualify invites (tier rewards included) and give stock back,
the ``retained`` qualifying action, per-product commission rates, failed groups' seats, and the
reward / review webhooks written by the outbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fission_helpers import (
    DISTRIBUTION,
    GROUP_BUY,
    INVITE,
    convert,
    create,
    join,
    rewards,
    workspace_id,
)
from sqlalchemy import select

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.rewards import service as ledger
from liebian.webhooks.models import WebhookEvent

FIRST_PURCHASE = {
    **INVITE,
    "qualifying_action": "first_purchase",
    "reward_delay_days": 7,
    "stock": 10,
    "budget": 100_000,
}


def _mine(client: Any, owner: dict[str, str], cid: str, who: str) -> list[tuple[str, int, str]]:
    return sorted(
        (r["reason"], r["amount"], r["status"])
        for r in rewards(client, owner, campaign_id=cid, external_id=who)
    )


def _campaign(client: Any, owner: dict[str, str], cid: str) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/campaigns/{cid}", headers=owner).json())


def _invite(client: Any, owner: dict[str, str], cid: str, referrer: str, *people: str) -> None:
    code = join(client, owner, cid, referrer).json()["invite_code"]
    for i, person in enumerate(people):
        resp = join(client, owner, cid, person, referrer_code=code, visitor_id=f"v-{person}",
                    ip=f"10.9.0.{i + 1}")  # fmt: skip
        assert resp.status_code == 201, resp.text


def test_full_refund_reverses_tier_and_invitee_rewards_and_returns_stock(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = create(client, owner, "invite", FIRST_PURCHASE)
    ws = workspace_id(client, owner)
    _invite(client, owner, cid, "alice", "bob")
    convert(runtime, ws, "bob", "purchase", "p-1", 5_000, order_id="o-1")
    assert _mine(client, owner, cid, "alice") == [("tier", 500, "pending")]
    assert _mine(client, owner, cid, "bob") == [("invitee", 1_000, "pending")]
    used = _campaign(client, owner, cid)
    assert (used["stock_used"], used["budget_used"]) == (2, 1_500)

    convert(runtime, ws, "bob", "refund", "r-1", 2_000, order_id="o-1")  # partial: still counts
    assert _mine(client, owner, cid, "alice") == [("tier", 500, "pending")]
    convert(runtime, ws, "bob", "refund", "r-2", 0, order_id="o-1")  # the rest: no longer counts
    assert _mine(client, owner, cid, "alice") == [("tier", 500, "reversed")]
    assert _mine(client, owner, cid, "bob") == [("invitee", 1_000, "reversed")]
    used = _campaign(client, owner, cid)
    assert (used["stock_used"], used["budget_used"]) == (0, 0)
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()
    assert ref["items"][0]["qualified"] is False

    # A later purchase that stands qualifies the invite again, and it counts toward the next
    # tiers; but the same referral never pays the same reward twice (idempotency keys are per
    # referral), which closes the buy → earn → refund → buy-again loop.
    convert(runtime, ws, "bob", "purchase", "p-2", 3_000, order_id="o-2")
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()
    assert ref["items"][0]["qualified"] is True
    assert _mine(client, owner, cid, "alice") == [("tier", 500, "reversed")]
    with session_scope(runtime.sessions) as session:
        ledger.settle(session, utcnow() + timedelta(days=8))
    balance = client.get(
        "/api/v1/rewards/balances", params={"external_id": "alice"}, headers=owner
    ).json()["balances"]
    entries = rewards(client, owner, external_id="alice")
    # Balances always equal the sum of the entries that are not reversed.
    assert sum(b["total"] for b in balance) == sum(
        e["amount"] for e in entries if e["status"] != "reversed"
    )


def test_tier_moves_to_the_next_invite_that_still_counts(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = create(client, owner, "invite", {**FIRST_PURCHASE, "invitee_reward": None})
    ws = workspace_id(client, owner)
    _invite(client, owner, cid, "alice", "bob", "carol")
    convert(runtime, ws, "bob", "purchase", "p-1", 5_000, order_id="o-b")
    convert(runtime, ws, "carol", "purchase", "p-2", 5_000, order_id="o-c")
    tier = [r for r in rewards(client, owner, external_id="alice") if r["reason"] == "tier"]
    assert len(tier) == 1
    convert(runtime, ws, "bob", "refund", "r-1", 0, order_id="o-b")
    tiers = [r for r in rewards(client, owner, external_id="alice") if r["reason"] == "tier"]
    active = [r for r in tiers if r["status"] != "reversed"]
    assert len(tiers) == 2 and len(active) == 1  # re-granted, crossed by carol's invite now
    assert active[0]["referral_id"] != tier[0]["referral_id"]
    assert _campaign(client, owner, cid)["stock_used"] == 1


def test_retained_invites_qualify_on_a_later_event(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    config = {**INVITE, "qualifying_action": "retained", "retained_days": 7, "invitee_reward": None}
    cid = create(client, owner, "invite", config)
    ws = workspace_id(client, owner)
    _invite(client, owner, cid, "alice", "bob")
    convert(runtime, ws, "bob", "active", "a-1", ts=utcnow() + timedelta(days=3))
    assert _mine(client, owner, cid, "alice") == []  # too early to call it retained
    convert(runtime, ws, "bob", "active", "a-2", ts=utcnow() + timedelta(days=8))
    assert _mine(client, owner, cid, "alice") == [("tier", 500, "issued")]


def test_retained_does_not_count_an_invitee_who_left(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    config = {**INVITE, "qualifying_action": "retained", "retained_days": 1, "invitee_reward": None}
    cid = create(client, owner, "invite", config)
    ws = workspace_id(client, owner)
    _invite(client, owner, cid, "alice", "bob")
    convert(runtime, ws, "bob", "leave_group", "l-1")
    convert(runtime, ws, "bob", "purchase", "p-1", 100, ts=utcnow() + timedelta(days=2))
    assert _mine(client, owner, cid, "alice") == []


def test_per_product_commission_rates(client: Any, owner: dict[str, str], runtime: Any) -> None:
    config = {
        **DISTRIBUTION,
        "product_rates": {"vip-course": [{"rate_bp": 2_000}, {"rate_bp": 1_000}]},
    }
    cid = create(client, owner, "distribution", config)
    ws = workspace_id(client, owner)
    code_a = join(client, owner, cid, "a").json()["invite_code"]
    code_b = join(client, owner, cid, "b", referrer_code=code_a, visitor_id="vb").json()[
        "invite_code"
    ]
    join(client, owner, cid, "c", referrer_code=code_b, visitor_id="vc", ip="10.8.0.3")
    convert(runtime, ws, "c", "purchase", "p-1", 10_000, order_id="o-1", product_id="vip-course")
    convert(runtime, ws, "c", "purchase", "p-2", 10_000, order_id="o-2", product_id="other")
    assert sorted(r["amount"] for r in rewards(client, owner, external_id="b")) == [1_000, 2_000]
    assert sorted(r["amount"] for r in rewards(client, owner, external_id="a")) == [500, 1_000]
    # A refund recalculates at the rate the sale was paid at.
    convert(runtime, ws, "c", "refund", "r-1", 5_000, order_id="o-1")
    b = rewards(client, owner, external_id="b", status="pending")
    assert sorted(r["amount"] for r in b) == [1_000, 1_000]


def test_product_rates_are_validated(client: Any, owner: dict[str, str]) -> None:
    for product_rates in (
        {"x": [{"rate_bp": 1_000}]},  # one rate for a two-level campaign
        {"x": [{"rate_bp": 4_000}, {"rate_bp": 2_000}]},  # above 50 %
        {"x": [{"rate_bp": 0}, {"rate_bp": 10}]},
    ):
        resp = client.post(
            "/api/v1/campaigns",
            json={"type": "distribution", "name": "d",
                  "config": {**DISTRIBUTION, "product_rates": product_rates}},
            headers=owner,
        )  # fmt: skip
        assert resp.status_code == 422, resp.text
        assert "error" in resp.json()


def test_failed_group_gives_its_seats_back(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    from liebian.campaigns import groups
    from liebian.campaigns.tasks import run_fission_jobs

    cid = create(client, owner, "group_buy", {**GROUP_BUY, "stock": 5})
    ws = workspace_id(client, owner)
    with session_scope(runtime.sessions) as session:
        group = groups.open_group(
            session, runtime.cipher, ws, cid, "leader", now=utcnow() - timedelta(hours=25)
        )
    assert (
        client.post(
            f"/api/v1/groups/{group.id}/join", json={"external_id": "m1"}, headers=owner
        ).status_code
        == 409
    )  # expired: refuses joins
    assert _campaign(client, owner, cid)["stock_used"] == 1
    assert run_fission_jobs(runtime.sessions, utcnow()).groups_failed == 1
    assert _campaign(client, owner, cid)["stock_used"] == 0
    assert run_fission_jobs(runtime.sessions, utcnow()).groups_failed == 0  # once only
    assert _campaign(client, owner, cid)["stock_used"] == 0


def test_reward_and_review_webhook_events(client: Any, owner: dict[str, str], runtime: Any) -> None:
    hook = client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/x",
              "topics": ["reward.issued", "reward.reversed", "referral.held"]},
        headers=owner,
    )  # fmt: skip
    assert hook.status_code == 201, hook.text
    cid = create(client, owner, "invite", FIRST_PURCHASE)
    ws = workspace_id(client, owner)
    _invite(client, owner, cid, "alice", "bob")
    convert(runtime, ws, "bob", "purchase", "p-1", 5_000, order_id="o-1")
    with session_scope(runtime.sessions) as session:  # settlement issues both entries
        assert ledger.settle(session, utcnow() + timedelta(days=8)).issued == 2
    convert(runtime, ws, "bob", "refund", "r-1", 0, order_id="o-1")
    dist = create(
        client, owner, "distribution",
        {**DISTRIBUTION, "risk": {"mode": "review", "hold_at": 40, "block_at": 80}},
    )  # fmt: skip
    code = join(client, owner, dist, "x", phone="13900002222").json()["invite_code"]
    join(client, owner, dist, "y", referrer_code=code, phone="139 0000 2222")
    with runtime.sessions() as session:
        events = list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
    topics = [e.topic for e in events]
    assert topics.count("reward.issued") == 2
    assert topics.count("reward.reversed") == 2
    assert topics.count("referral.held") == 1
    issued = next(e for e in events if e.topic == "reward.issued")
    assert issued.data["external_id"] in ("alice", "bob") and issued.data["status"] == "issued"
    held = next(e for e in events if e.topic == "referral.held")
    assert (held.data["referrer_external_id"], held.data["referee_external_id"]) == ("x", "y")
