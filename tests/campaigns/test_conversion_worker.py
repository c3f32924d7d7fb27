"""Conversions posted to POST /api/v1/events are applied by the hooks worker, after the 202."""

from __future__ import annotations

import time
from typing import Any

from fission_helpers import INVITE, create, join, rewards


def _wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll until ``check()`` is truthy (the worker runs in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.02)


def _invite_with_referee(client: Any, owner: dict[str, str]) -> str:
    # Joining the campaign is a signup already; joining the brand's group is an event.
    cid = create(client, owner, "invite", {**INVITE, "qualifying_action": "join_group"})
    first = join(client, owner, cid, "a", visitor_id="v-a", ip="10.0.0.1")
    assert first.status_code == 201, first.text
    code = first.json()["invite_code"]
    second = join(client, owner, cid, "b", referrer_code=code, visitor_id="v-b", ip="10.0.0.2")
    assert second.status_code == 201, second.text
    return cid


def test_a_conversion_is_applied_by_the_worker_without_the_request_waiting(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = _invite_with_referee(client, owner)
    worker = runtime.extras["event_hooks_worker"]
    signup = {"event": "join_group", "event_id": "joined-b", "user_id": "b"}
    # The worker is held: the answer comes anyway, and nothing is applied yet.
    with worker.paused():
        resp = client.post("/api/v1/events", json=[signup, {"event": "page_view", "visitor_id": "x"}], headers=owner)  # fmt: skip
        assert resp.status_code == 202 and resp.json()["accepted"] == 2
        assert rewards(client, owner, campaign_id=cid, external_id="b") == []
    # Released, the background worker qualifies the referral: both sides are rewarded.
    invitee = _wait_for(lambda: rewards(client, owner, campaign_id=cid, external_id="b"), "reward")
    assert [(r["name"], r["amount"]) for r in invitee] == [("新人券", 1000)]
    referrer = rewards(client, owner, campaign_id=cid, external_id="a")
    assert [(r["name"], r["amount"]) for r in referrer] == [("5元券", 500)]
    # The same event sent again (a client retry) changes nothing.
    assert client.post("/api/v1/events", json=signup, headers=owner).status_code == 202
    runtime.apply_event_hooks()
    assert len(rewards(client, owner, campaign_id=cid, external_id="b")) == 1
    assert len(rewards(client, owner, campaign_id=cid, external_id="a")) == 1


def test_a_person_s_purchase_and_refund_apply_in_the_order_they_were_sent(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    """first_purchase qualifies on the purchase and un-qualifies on its full refund: applied in
    the other order the refund would find nothing and the reward would stand."""
    config = {**INVITE, "qualifying_action": "first_purchase"}
    cid = create(client, owner, "invite", config)
    first = join(client, owner, cid, "a", visitor_id="v-a", ip="10.0.0.1")
    code = first.json()["invite_code"]
    assert join(client, owner, cid, "b", referrer_code=code, visitor_id="v-b", ip="10.0.0.2").status_code == 201  # fmt: skip
    order = {"user_id": "b", "revenue": 9_900, "properties": {"order_id": "o-1"}}
    worker = runtime.extras["event_hooks_worker"]
    with worker.paused():  # both in the same batch of the worker
        for body in (
            {"event": "signup", "event_id": "s-b", "user_id": "b"},
            {"event": "purchase", "event_id": "p-b", **order},
            {"event": "refund", "event_id": "r-b", **order},
        ):
            assert client.post("/api/v1/events", json=body, headers=owner).status_code == 202
    runtime.apply_event_hooks()
    assert [(r["name"], r["status"]) for r in rewards(client, owner, campaign_id=cid, external_id="b")] == [("新人券", "reversed")]  # fmt: skip
