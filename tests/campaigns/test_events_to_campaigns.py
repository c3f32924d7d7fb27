"""Conversions sent to POST /api/v1/events reach the fission engine (the ingestion hook)."""

from __future__ import annotations

from typing import Any

from fission_helpers import DISTRIBUTION, create, join, rewards


def test_purchase_and_refund_events_drive_commission(
    client: Any, owner: dict[str, str], runtime: Any
) -> None:
    cid = create(client, owner, "distribution", DISTRIBUTION)
    first = join(client, owner, cid, "a", visitor_id="v-a", ip="10.0.0.1")
    assert first.status_code == 201, first.text
    second = join(
        client,
        owner,
        cid,
        "b",
        referrer_code=first.json()["invite_code"],
        visitor_id="v-b",
        ip="10.0.0.2",
    )
    assert second.status_code == 201, second.text

    purchase = {"event": "purchase", "event_id": "ord-1-paid", "user_id": "b", "revenue": 20_000,
                "properties": {"order_id": "ord-1"}}  # fmt: skip
    resp = client.post("/api/v1/events", json=[purchase, purchase], headers=owner)
    assert resp.status_code == 202 and resp.json()["accepted"] == 2
    # A retry of the same event pays nothing more.
    client.post("/api/v1/events", json=purchase, headers=owner)
    runtime.apply_event_hooks()  # what the hooks worker does in the background
    assert [
        (r["amount"], r["status"]) for r in rewards(client, owner, campaign_id=cid, external_id="a")
    ] == [(2_000, "pending")]
    refund = {"event": "refund", "event_id": "ord-1-refund", "user_id": "b", "revenue": 20_000,
              "properties": {"order_id": "ord-1"}}  # fmt: skip
    assert client.post("/api/v1/events", json=refund, headers=owner).status_code == 202
    runtime.apply_event_hooks()
    assert [
        (r["amount"], r["status"]) for r in rewards(client, owner, campaign_id=cid, external_id="a")
    ] == [(2_000, "reversed")]


def test_a_refused_conversion_does_not_fail_the_ingest(client: Any, owner: dict[str, str]) -> None:
    # Above the fission engine's per-order sanity limit: the event is stored, no reward is paid.
    huge = {"event": "purchase", "event_id": "big", "user_id": "z", "revenue": 500_000_000}
    resp = client.post("/api/v1/events", json=huge, headers=owner)
    assert resp.status_code == 202 and resp.json()["accepted"] == 1
