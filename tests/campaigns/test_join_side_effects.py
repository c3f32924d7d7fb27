"""What joins and helps set off — the group's success, the leader's coupon, campaign events,
webhook outbox rows, bus events — happens exactly once per group or activity, and only for
what was committed, under real concurrency (on SQLite many of these requests share a group
commit, where refused ones roll back their own savepoint only)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from fission_helpers import ASSIST_UNLOCK, GROUP_BUY, hammer, post_json
from sqlalchemy import func, select

from liebian.campaigns.assists import ASSIST_UNLOCKED
from liebian.campaigns.groups import GROUP_SUCCEEDED
from liebian.campaigns.models import CampaignEvent
from liebian.kit.db import session_scope
from liebian.rewards.models import RewardEntry
from liebian.webhooks.models import WebhookEvent


def test_each_success_and_unlock_happens_once(
    server: str, owner: dict[str, str], runtime: Any
) -> None:
    published: list[tuple[str, str]] = []
    guard = threading.Lock()

    def record(topic: str, key: str) -> Any:
        def callback(payload: Any) -> None:
            with guard:
                published.append((topic, payload[key]))

        return callback

    runtime.bus.subscribe(GROUP_SUCCEEDED, record(GROUP_SUCCEEDED, "group_id"))
    runtime.bus.subscribe(ASSIST_UNLOCKED, record(ASSIST_UNLOCKED, "assist_id"))
    api = f"{server}/api/v1"
    hook = post_json(f"{api}/webhooks", owner, {"url": "http://127.0.0.1:9/x", "topics": ["*"]})
    assert hook.status_code == 201, hook.text

    def campaign(type_: str, config: dict[str, Any]) -> str:
        resp = post_json(
            f"{api}/campaigns", owner, {"type": type_, "name": "副作用", "config": config}
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    gcid, acid = campaign("group_buy", GROUP_BUY), campaign("assist", ASSIST_UNLOCK)
    gids = [
        post_json(f"{api}/campaigns/{gcid}/groups", owner, {"leader_external_id": f"l{i}"}).json()[
            "group_id"
        ]
        for i in range(4)
    ]
    aids = [
        post_json(f"{api}/campaigns/{acid}/assists", owner, {"external_id": f"o{i}"}).json()[
            "assist_id"
        ]
        for i in range(4)
    ]

    # 8 people race for each group's 4 free seats; 6 helpers (one of them twice) for each
    # activity's 3 helps; all at once.
    def call(i: int) -> httpx.Response:
        if i < 32:
            return post_json(f"{api}/groups/{gids[i % 4]}/join", owner, {"external_id": f"j{i}"})
        n = i - 32
        helper = f"h{n // 8}" if n % 8 == 0 else f"h{n}"
        return post_json(f"{api}/assists/{aids[n % 4]}/help", owner, {"external_id": helper})

    results = hammer(56, call)
    assert all(r.status_code in (200, 409) for r in results), [r.text for r in results]
    assert sum(r.status_code == 200 for r in results[:32]) == 16
    assert sum(r.status_code == 200 for r in results[32:]) == 12

    with httpx.Client(headers=owner) as http:
        for gid in gids:
            group = http.get(f"{api}/groups/{gid}").json()
            assert group["status"] == "success" and len(group["members"]) == 5
        for aid in aids:
            assert http.get(f"{api}/assists/{aid}").json()["unlocked"] is True
    with session_scope(runtime.sessions) as session:

        def count(model: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        assert count(RewardEntry, RewardEntry.reason == "group_leader") == 4
        assert count(RewardEntry, RewardEntry.reason == "assist") == 4
        assert count(CampaignEvent, CampaignEvent.kind == GROUP_SUCCEEDED) == 4
        assert count(CampaignEvent, CampaignEvent.kind == ASSIST_UNLOCKED) == 4
        topics = list(session.scalars(select(WebhookEvent.topic)))
        assert topics.count(GROUP_SUCCEEDED) == 4 and topics.count(ASSIST_UNLOCKED) == 4
    assert sorted(published) == sorted(
        [(GROUP_SUCCEEDED, gid) for gid in gids] + [(ASSIST_UNLOCKED, aid) for aid in aids]
    )
