"""apply_conversion: idempotent per event id; distribution commission, refunds, qualification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fission_helpers import DISTRIBUTION, INVITE, convert, create, join, rewards, workspace_id

from liebian.kit.clock import utcnow
from liebian.kit.db import session_scope
from liebian.kit.errors import Invalid
from liebian.rewards import service as ledger


def _chain(client: Any, owner: dict[str, str], cid: str, names: list[str]) -> None:
    code = None
    for i, name in enumerate(names):
        resp = join(
            client,
            owner,
            cid,
            name,
            referrer_code=code,
            visitor_id=f"v-{name}",
            ip=f"10.0.0.{i + 1}",
        )
        assert resp.status_code == 201, resp.text
        code = resp.json()["invite_code"]


def _amounts(client: Any, owner: dict[str, str], cid: str, who: str) -> list[tuple[int, str]]:
    return sorted(
        (r["amount"], r["status"]) for r in rewards(client, owner, campaign_id=cid, external_id=who)
    )


def test_two_levels_only_and_idempotent(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "distribution", DISTRIBUTION)
    ws = workspace_id(client, owner)
    _chain(client, owner, cid, ["a", "b", "c", "d"])
    convert(runtime, ws, "d", "purchase", "evt-1", 10_000, order_id="o-1")
    convert(runtime, ws, "d", "order_paid", "evt-1", 10_000, order_id="o-1")  # replay
    assert _amounts(client, owner, cid, "c") == [(1_000, "pending")]
    assert _amounts(client, owner, cid, "b") == [(500, "pending")]
    assert _amounts(client, owner, cid, "a") == []  # a third level is never paid
    assert _amounts(client, owner, cid, "d") == []  # no commission on your own purchase


def test_commission_waits_for_refund_window_then_settles(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = create(client, owner, "distribution", DISTRIBUTION)
    ws = workspace_id(client, owner)
    _chain(client, owner, cid, ["a", "b"])
    convert(runtime, ws, "b", "purchase", "evt-1", 9_999, order_id="o-1")
    with session_scope(runtime.sessions) as session:
        assert ledger.settle(session, utcnow() + timedelta(days=6)).approved == 0
    with session_scope(runtime.sessions) as session:
        result = ledger.settle(session, utcnow() + timedelta(days=8))
    assert (result.approved, result.issued) == (1, 1)
    assert _amounts(client, owner, cid, "a") == [(999, "issued")]  # 10 % rounded down


def test_partial_then_full_refund(client: Any, owner: dict[str, str], runtime: Any) -> None:
    cid = create(client, owner, "distribution", DISTRIBUTION)
    ws = workspace_id(client, owner)
    _chain(client, owner, cid, ["a", "b", "c"])
    convert(runtime, ws, "c", "purchase", "evt-1", 10_000, order_id="o-1")
    convert(runtime, ws, "c", "refund", "evt-2", 4_000, order_id="o-1")
    convert(runtime, ws, "c", "refund", "evt-2", 4_000, order_id="o-1")  # replay: no change
    assert _amounts(client, owner, cid, "b") == [(600, "pending"), (1_000, "reversed")]
    assert _amounts(client, owner, cid, "a") == [(300, "pending"), (500, "reversed")]
    # Settle, then refund the rest: issued commission is clawed back with negative entries.
    with session_scope(runtime.sessions) as session:
        ledger.settle(session, utcnow() + timedelta(days=8))
    convert(runtime, ws, "c", "refund", "evt-3", 0, order_id="o-1")
    assert _amounts(client, owner, cid, "b") == [
        (-600, "issued"),
        (600, "issued"),
        (1_000, "reversed"),
    ]
    bal = client.get("/api/v1/rewards/balances", params={"external_id": "b"}, headers=owner).json()[
        "balances"
    ]
    assert bal == [
        {"kind": "cash", "currency": "CNY", "pending": 0, "approved": 0, "issued": 0, "total": 0,
         "paid": 0, "in_payout": 0}
    ]  # fmt: skip


def test_first_touch_binding_lock(client: Any, owner: dict[str, str], runtime: Any) -> None:
    from liebian.campaigns import referrals

    cid = create(client, owner, "distribution", DISTRIBUTION)
    ws = workspace_id(client, owner)
    code_a = join(client, owner, cid, "a").json()["invite_code"]
    code_b = join(client, owner, cid, "b").json()["invite_code"]
    join(client, owner, cid, "buyer", referrer_code=code_a, visitor_id="vb")
    # Within the lock period another referrer's link does not steal the buyer.
    assert join(client, owner, cid, "buyer", referrer_code=code_b).status_code == 200
    convert(runtime, ws, "buyer", "purchase", "evt-1", 10_000, order_id="o-1")
    assert _amounts(client, owner, cid, "a") == [(1_000, "pending")]
    with session_scope(runtime.sessions) as session:
        referrals.join(
            session, runtime.cipher, ws, cid, referrals.JoinInput(external_id="buyer", referrer_code=code_b),
            now=utcnow() + timedelta(days=31),
        )  # fmt: skip
    convert(runtime, ws, "buyer", "purchase", "evt-2", 10_000, order_id="o-2")
    assert _amounts(client, owner, cid, "b") == [(1_000, "pending")]
    assert _amounts(client, owner, cid, "a") == [(1_000, "pending")]


def test_qualifying_actions_and_leaving(client: Any, owner: dict[str, str], runtime: Any) -> None:
    config = {**INVITE, "qualifying_action": "first_purchase", "invitee_reward": None}
    cid = create(client, owner, "invite", config)
    ws = workspace_id(client, owner)
    code = join(client, owner, cid, "alice").json()["invite_code"]
    join(client, owner, cid, "bob", referrer_code=code, visitor_id="vb")
    assert rewards(client, owner, campaign_id=cid) == []  # joined, not yet qualified
    convert(runtime, ws, "bob", "signup", "s-1")
    assert rewards(client, owner, campaign_id=cid) == []  # wrong qualifying action
    convert(runtime, ws, "bob", "purchase", "p-1", 5_000, order_id="o-1")
    assert _amounts(client, owner, cid, "alice") == [(500, "issued")]
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
        "items"
    ][0]
    assert ref["qualified"] is True

    grp = create(
        client,
        owner,
        "invite",
        {
            **INVITE,
            "qualifying_action": "join_group",
            "invitee_reward": None,
            "reward_delay_days": 3,
        },
    )
    code = join(client, owner, grp, "carol").json()["invite_code"]
    join(client, owner, grp, "dan", referrer_code=code, visitor_id="vd")
    convert(runtime, ws, "dan", "join_group", "j-1")
    assert _amounts(client, owner, grp, "carol") == [(500, "pending")]
    convert(runtime, ws, "dan", "leave_group", "l-1")
    assert _amounts(client, owner, grp, "carol") == [(500, "reversed")]


def test_bad_revenue_and_unknown_events(runtime: Any, client: Any, owner: dict[str, str]) -> None:
    ws = workspace_id(client, owner)
    with pytest.raises(Invalid):
        convert(runtime, ws, "x", "purchase", "e-neg", -1)
    with pytest.raises(Invalid):
        convert(runtime, ws, "x", "purchase", "e-big", 10**12)
    convert(runtime, ws, "x", "page_view", "e-pv")  # ignored, nothing written
    assert client.get("/api/v1/contacts/x", headers=owner).status_code == 404


def test_commission_of_held_referral_waits_for_review(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    config = {**DISTRIBUTION, "risk": {"mode": "review", "hold_at": 40, "block_at": 80}}
    cid = create(client, owner, "distribution", config)
    ws = workspace_id(client, owner)
    code = join(client, owner, cid, "a", phone="13900001111").json()["invite_code"]
    join(client, owner, cid, "b", referrer_code=code, phone="139 0000 1111")
    ref = client.get("/api/v1/referrals", params={"campaign_id": cid}, headers=owner).json()[
        "items"
    ][0]
    assert ref["status"] == "held"
    convert(runtime, ws, "b", "purchase", "evt-1", 10_000, order_id="o-1")
    later = utcnow() + timedelta(days=8)
    with session_scope(runtime.sessions) as session:
        assert ledger.settle(session, later).approved == 0
    assert _amounts(client, owner, cid, "a") == [(1_000, "pending")]
    assert (
        client.post(f"/api/v1/risk/reviews/{ref['id']}/approve", headers=owner).status_code == 200
    )
    with session_scope(runtime.sessions) as session:
        assert ledger.settle(session, later).issued == 1
    assert _amounts(client, owner, cid, "a") == [(1_000, "issued")]
