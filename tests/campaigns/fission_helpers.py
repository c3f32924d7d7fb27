"""Shared builders for the fission tests (campaign configs and API shortcuts)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

INVITE = {
    "tiers": [
        {"invites": 1, "reward": {"kind": "coupon", "name": "5元券", "amount": 500}},
        {"invites": 3, "reward": {"kind": "gift", "name": "试听课", "amount": 1}},
    ],
    "invitee_reward": {"kind": "coupon", "name": "新人券", "amount": 1000},
    "qualifying_action": "signup",
    "new_users_only": True,
    "risk": {"mode": "block", "hold_at": 40, "block_at": 80},
}
GROUP_BUY = {
    "product_name": "Python入门课",
    "original_price": 49_900,
    "tiers": [{"size": 5, "price": 19_900}],
    "time_limit_hours": 24,
    "leader_discount": 2_000,
}
ASSIST_UNLOCK = {
    "mode": "unlock",
    "helpers_required": 3,
    "reward": {"kind": "gift", "name": "直播课", "amount": 1},
    "max_helps_per_helper_per_day": 50,
}
BARGAIN = {
    "mode": "bargain",
    "bargain": {"start_price": 10_000, "floor_price": 100, "max_helpers": 5, "cut_mode": "random"},
    "max_helps_per_helper_per_day": 50,
}
DISTRIBUTION = {
    "levels": [{"rate_bp": 1_000}, {"rate_bp": 500}],
    "binding": "first_touch",
    "lock_days": 30,
    "freeze_days": 7,
}


def create(
    client: Any, headers: dict[str, str], type_: str, config: dict[str, Any], name: str = "活动"
) -> str:
    resp = client.post(
        "/api/v1/campaigns", json={"type": type_, "name": name, "config": config}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def join(
    client: Any, headers: dict[str, str], campaign_id: str, external_id: str, **extra: Any
) -> Any:
    return client.post(
        f"/api/v1/campaigns/{campaign_id}/participants",
        json={"external_id": external_id, **extra},
        headers=headers,
    )


def rewards(client: Any, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/rewards", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def post_json(url: str, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    """One POST on its own connection (the concurrency tests call it from many threads)."""
    with httpx.Client(timeout=60) as http:
        return http.post(url, json=body, headers=headers)


def hammer(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` for i in range(n) on n threads released at the same instant."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def workspace_id(client: Any, headers: dict[str, str]) -> str:
    resp = client.get("/api/v1/workspace", headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def convert(
    runtime: Any, ws: str, user: str, event: str, event_id: str, revenue: int = 0, **props: Any
) -> None:
    """Apply one conversion event to the campaigns directly (what the ingestion hook does)."""
    from liebian.campaigns.conversions import apply_conversion
    from liebian.kit.clock import utcnow
    from liebian.kit.db import session_scope

    ts = props.pop("ts", None) or utcnow()
    with session_scope(runtime.sessions) as session:
        apply_conversion(
            session, ws, user_id=user, event=event, event_id=event_id, revenue=revenue,
            currency="CNY", ts=ts, properties=props,
        )  # fmt: skip
